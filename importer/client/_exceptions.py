"""What can go wrong between us and iVvy (under :class:`importer.errors.Error`, the library's one
base).

    IvvyError                 anything between us and iVvy
     ├── ApiError             iVvy answered with an error: errorCode, specificCode, message,
     │    │                   additional_messages and the HTTP status
     │    ├── AuthError       401, 462, 463: key, secret, signature or clock refused
     │    │                   (``ends_session``: 462 Session Expired, 463 Key Revoked)
     │    ├── NotSaved        ``{"success": false}``: refused, nothing saved
     │    ├── RateLimited     429 (or a gateway's bare 403): slow down; retry_after in seconds
     │    │                   when the server said; ``busy`` for 24299, a race, not a rate
     │    └── ServerError     5xx: the server failed (the write may or may not have happened);
     │                        ``overloaded`` for 503
     └── TransportError       no usable answer: connection refused, timeout, connection dropped,
                              a body that is not JSON; ``maybe_processed`` tells whether the
                              request may have reached the server (then a write may have happened)

No exception here ever holds the API secret: they are built from the server's answer and the
request's path only.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import Error
from ..fields import BUSY, NOT_SAVED


class IvvyError(Error):
    """Anything that went wrong between us and iVvy."""


class ApiError(IvvyError):
    """iVvy answered with an error body."""

    def __init__(
        self,
        *,
        error_code: int,
        message: str,
        specific_code: int | None = None,
        additional_messages: Sequence[str] = (),
        http_status: int | None = None,
        action: str = "",
    ) -> None:
        self.error_code = error_code
        self.specific_code = specific_code
        self.message = message
        self.additional_messages = tuple(additional_messages)
        self.http_status = http_status if http_status is not None else error_code
        self.action = action
        text = f"{action}: " if action else ""
        text += f"{error_code}"
        if specific_code is not None:
            text += f"/{specific_code}"
        text += f" {message}"
        if self.additional_messages:
            text += " (" + "; ".join(self.additional_messages) + ")"
        super().__init__(text)

    @property
    def code(self) -> int:
        """The most specific code known: ``specificCode`` when given, else ``errorCode``."""
        return self.specific_code if self.specific_code is not None else self.error_code

    @property
    def full_message(self) -> str:
        """The message with the additional messages, as one line for a person."""
        if not self.additional_messages:
            return self.message
        return f"{self.message}: " + "; ".join(self.additional_messages)


class AuthError(ApiError):
    """The key, the signature or the request's date was refused (401, 462, 463)."""

    @property
    def ends_session(self) -> bool:
        """462 Session Expired or 463 Key Revoked: nothing more will pass; stop, do not retry."""
        return self.error_code in (462, 463) or self.http_status in (462, 463)


class NotSaved(ApiError):
    """iVvy answered ``{"success": false}``: a refusal with its message, nothing saved."""

    @property
    def code(self) -> str:  # type: ignore[override]
        return NOT_SAVED


class RateLimited(ApiError):
    """429 Too Many Requests (or a gateway's bare 403). ``retry_after``: the wait in seconds
    the server asked for, if any."""

    def __init__(
        self, *, retry_after: float | None = None, from_gateway: bool = False, **kwargs
    ) -> None:
        self.retry_after = retry_after
        self.from_gateway = from_gateway
        super().__init__(**kwargs)

    @property
    def busy(self) -> bool:
        """24299: a race on iVvy's side, to retry like any transient failure: not a rate."""
        return self.specific_code == BUSY


class ServerError(ApiError):
    """A 5xx answer: the server failed. For a write, whether it happened is unknown.
    ``overloaded``: a 503, which also says to slow down."""

    def __init__(self, *, overloaded: bool = False, **kwargs) -> None:
        self.overloaded = overloaded
        super().__init__(**kwargs)


class TransportError(IvvyError):
    """No usable answer.

    ``maybe_processed`` is False only when the request certainly never reached the server
    (the connection could not be made); otherwise a write may have happened.
    """

    def __init__(self, message: str, *, maybe_processed: bool, action: str = "") -> None:
        self.maybe_processed = maybe_processed
        self.action = action
        super().__init__(f"{action}: {message}" if action else message)
