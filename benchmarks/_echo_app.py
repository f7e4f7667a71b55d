"""A bare starlette app answering small JSON: the baseline the sandbox is compared with."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"success": True, "id": 1})


app = Starlette(routes=[Route("/api/1.0/{namespace}", echo, methods=["POST"])])
