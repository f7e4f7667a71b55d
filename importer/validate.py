"""Validate: the API's own rules, checked before anything is sent, with the API's own codes.

This first version checks, offline, what a create needs (23017) and the one-parent rule (24396).
"""

from __future__ import annotations

from .fields import TASK_FIELDS
from .model import Outcome, Payload


def validate(payload: Payload) -> Outcome | None:
    """None when the payload may be sent; else the ``invalid`` outcome with the API's code."""
    params = payload.params
    if not payload.is_update:
        for field in TASK_FIELDS:
            if field.required_on_create and field.name not in params:
                column = payload.columns.get(field.name, field.name)
                return Outcome(
                    "invalid",
                    error_code=23017,
                    field=column,
                    message=f"{column!r} is required to create a task",
                )
    if "leadId" in params and ("contactId" in params or "companyId" in params):
        other = "contactId" if "contactId" in params else "companyId"
        return Outcome(
            "invalid",
            error_code=24396,
            field=payload.columns.get(other, other),
            message="a task belongs to one parent: a lead, or a contact and/or a company",
        )
    return None
