"""The page's work off its event loop: threads of their own for reading, checking and importing."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._state import Verdict

T = TypeVar("T")


def collect_verdicts(verdicts: dict[int, Verdict]) -> Callable[[Any, Any, str], None]:
    """A verdict collector for :func:`validate_source`: each row's verdict, kept small (alike
    verdicts are one object)."""
    alike: dict[Verdict, Verdict] = {}

    def collect(row: Any, outcome: Any, verb: str) -> None:
        verdict = Verdict(outcome.result, outcome.error_code, verb)
        verdicts[row.number] = alike.setdefault(verdict, verdict)

    return collect


async def off_loop(work: Callable[[], T]) -> T:
    """``work()`` in a daemon thread of its own, awaited: the event loop answers every other
    request meanwhile, and a stop never waits for it (the process ends all the same)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
            loop.call_soon_threadsafe(outcome)

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the request that awaits it
            failure = exc

            def failed() -> None:
                if not future.done():
                    future.set_exception(failure)

            settle(failed)
        else:

            def succeeded() -> None:
                if not future.done():
                    future.set_result(result)

            settle(succeeded)

    threading.Thread(target=run, daemon=True, name="page-work").start()
    return await future
