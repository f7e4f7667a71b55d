"""An error answer of the sandbox, shaped as iVvy's error body."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Refusal(Exception):
    """Answer ``status`` with ``{"errorCode", "message", "specificCode", "additionalMessages"}``.

    As in the reference's examples, the HTTP status equals ``errorCode``.
    """

    def __init__(
        self,
        error_code: int,
        message: str,
        specific_code: int | None = None,
        additional_messages: Sequence[str] = (),
    ) -> None:
        self.error_code = error_code
        self.message = message
        self.specific_code = specific_code
        self.additional_messages = list(additional_messages)
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errorCode": self.error_code, "message": self.message}
        if self.specific_code is not None:
            body["specificCode"] = self.specific_code
        if self.additional_messages:
            body["additionalMessages"] = self.additional_messages
        return body


def invalid(name: str, why: str) -> Refusal:
    """23016: ``'name' does not validate``, with the reason as an additional message."""
    return Refusal(400, f"'{name}' does not validate", 23016, [why])


def required(name: str, why: str | None = None) -> Refusal:
    """23017: ``'name' is required``."""
    return Refusal(400, f"'{name}' is required", 23017, [why] if why else [])
