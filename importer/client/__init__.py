"""The iVvy API client: request signing, regions, typed errors.

The public surface: :class:`IvvyClient`, :class:`Credentials`, :data:`REGIONS` and the exception
tree (see :mod:`importer.client._exceptions`).
"""

from ._client import IvvyClient, encode_body, is_read, parse_retry_after, signed_headers, transient
from ._config import REGIONS, Credentials, base_url_for
from ._exceptions import (
    ApiError,
    AuthError,
    IvvyError,
    NotSaved,
    RateLimited,
    ServerError,
    TransportError,
)

__all__ = [
    "REGIONS",
    "ApiError",
    "AuthError",
    "Credentials",
    "IvvyClient",
    "IvvyError",
    "NotSaved",
    "RateLimited",
    "ServerError",
    "TransportError",
    "base_url_for",
    "encode_body",
    "is_read",
    "parse_retry_after",
    "signed_headers",
    "transient",
]
