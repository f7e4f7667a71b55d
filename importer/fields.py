"""The facts of iVvy's ``crm?action=addOrUpdateTask``, in one place.

The validator, the sandbox, the results sheet and the README all read these tables, so a field,
a code or a vocabulary word is defined here once and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["integer", "string", "timestamp", "priority", "status"]


@dataclass(frozen=True, slots=True)
class Field:
    """One parameter of addOrUpdateTask."""

    name: str
    type: FieldType
    required_on_create: bool
    description: str


#: The parameters of addOrUpdateTask, in the order of the API reference (the order in which the
#: sandbox checks them: the API reports the first bad parameter only).
TASK_FIELDS: tuple[Field, ...] = (
    Field("id", "integer", False, "the task to update; empty means create"),
    Field("venueId", "integer", False, "venue of the task; required when leadId is an opportunity"),
    Field("leadId", "integer", False, "parent lead or opportunity"),
    Field("contactId", "integer", False, "parent contact"),
    Field("companyId", "integer", False, "parent company"),
    Field("name", "string", True, "the task's name"),
    Field("endDatetime", "timestamp", True, "due date and time, UTC, YYYY-MM-DD HH:MM:SS"),
    Field("priority", "priority", False, "low, medium or high"),
    Field("assignedUserId", "integer", False, "user the task is assigned to"),
    Field("status", "status", False, "0 Not Started … 4 Completed"),
    Field("description", "string", False, "free text"),
)
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in TASK_FIELDS}
#: The fields every new task needs.
REQUIRED_ON_CREATE: frozenset[str] = frozenset(f.name for f in TASK_FIELDS if f.required_on_create)
PARENT_FIELDS: tuple[str, ...] = ("leadId", "contactId", "companyId")

PRIORITIES: tuple[str, ...] = ("low", "medium", "high")
STATUSES: dict[int, str] = {
    0: "Not Started",
    1: "In Progress",
    2: "On Hold",
    3: "Cancelled",
    4: "Completed",
}

#: Words people use for each status, beyond its label (compared without case, spaces or
#: punctuation). Only words whose meaning is clear: anything else is refused, never guessed.
STATUS_SYNONYMS: dict[int, tuple[str, ...]] = {
    0: ("Not Started", "Open", "To do", "Todo", "New"),
    1: ("In Progress", "Started", "Ongoing", "Underway"),
    2: ("On Hold", "Deferred", "Waiting", "Waiting on someone else", "Waiting for input",
        "Paused", "Postponed"),
    3: ("Cancelled", "Canceled"),
    4: ("Completed", "Complete", "Done", "Closed", "Finished"),
}  # fmt: skip
#: Words for each priority: five-level scales fold onto iVvy's three.
PRIORITY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "low": ("Low", "Lowest"),
    "medium": ("Medium", "Normal"),
    "high": ("High", "Highest"),
}

#: The API's timestamp format (an optional " UTC" suffix is accepted on input).
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"

#: iVvy's general error codes (``errorCode``), with the HTTP status they travel with.
ERROR_CODES: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    429: "Too Many Requests",
    460: "Unknown",
    461: "Failed Request",
    462: "Session Expired",
    463: "Key Revoked",
    500: "Internal Server Error",
    501: "Not Implemented",
}

# iVvy's specific codes (``specificCode``) the importer acts on, by name: every module imports
# them from here.
STALE = 23005
DOES_NOT_VALIDATE = 23016
REQUIRED = 23017
BATCH_NOT_DONE = 24114
NO_LEAD, NO_CONTACT, NO_COMPANY, NO_TASK = 24389, 24390, 24391, 24392
BUSY = 24299
INVALID_DATA = 24395

# The importer's own codes (where the API defines none).
BAD_DATE = "BAD_DATE"
DUPLICATE_KEY = "DUPLICATE_KEY"
NOTHING_TO_UPDATE = "NOTHING_TO_UPDATE"
UNRESOLVED = "UNRESOLVED"
INTERRUPTED = "INTERRUPTED"
AMBIGUOUS = "AMBIGUOUS"
BATCH_PENDING = "BATCH_PENDING"
UNSETTLED = "UNSETTLED"
NOT_SAVED = "NOT_SAVED"
RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
UNREAD = "UNREAD"
EDITED_IN_IVVY = "EDITED_IN_IVVY"
NOT_CLEARED = "NOT_CLEARED"
UNSAVED_FORMULA = "UNSAVED_FORMULA"

#: iVvy's specific codes (``specificCode``) that this project meets, with what each means.
SPECIFIC_CODES: dict[int, str] = {
    23005: "the request is stale: its date is more than 5 minutes from the server's clock",
    23016: "a parameter does not validate (wrong type or a value outside its set)",
    23017: "a required parameter is missing",
    24091: "batch not saved",
    24092: "incorrect batch job format",
    24093: "empty batch job parameter",
    24096: "the contact does not exist",
    24105: "no such batch (progress)",
    24114: "the batch has not completed yet",
    24115: "no such batch (results)",
    24153: "the company does not exist",
    24389: "the lead or opportunity does not exist",
    24390: "the contact does not exist",
    24391: "the company does not exist",
    24392: "the task does not exist",
    24393: "an error has occurred",
    24394: "invalid data: validated, but another error occurred (see the messages)",
    24395: "invalid data",
    24396: "the task may belong to only one of contact, company or lead/opportunity",
    24448: "a batch may hold at most 200 jobs",
}

#: The importer's own codes (where the API defines none), with what each means and what to do.
IMPORTER_CODES: dict[str, str] = {
    BAD_DATE: "the due date cannot be read: write it as YYYY-MM-DD HH:MM (or give --date-order "
    "for 03/04/2026-style dates)",
    DUPLICATE_KEY: "the --key column holds this value on an earlier row: each legacy id once",
    NOTHING_TO_UPDATE: "the row has a task id and nothing else to change",
    UNRESOLVED: "an e-mail that matches no user or contact (or more than one) in iVvy",
    INTERRUPTED: "the run stopped while this row was being sent: --resume finds out whether it "
    "reached iVvy",
    AMBIGUOUS: "iVvy's answer was lost and tasks like the row's were made while someone else "
    "was creating tasks too: check the tasks named in the message; the row was not sent again",
    BATCH_PENDING: "the row's batch may still be carried out by iVvy: run the source again with "
    "--resume to settle it (nothing is sent twice)",
    UNSETTLED: "iVvy's answer was lost and no look-up could be made: --resume looks it up first",
    NOT_SAVED: "iVvy answered success: false (see the message): nothing was saved",
    RETRIES_EXHAUSTED: "iVvy could not be reached for this row after every retry: run again "
    "with --resume, or re-send it from the results sheet with --only failed",
    UNREAD: "the task's current values could not be read before the update (an undo puts them "
    "back): the update was not sent; run again to send it",
    EDITED_IN_IVVY: "someone changed the task in iVvy after this tool last wrote it: the row "
    "was not sent, so that edit stays (the message lists the fields that differ); give "
    "--overwrite-edits to send it anyway",
    UNSAVED_FORMULA: "the cell holds a formula with no saved value (the file was written by a "
    "program that does not compute formulas): open and save the file in Excel or LibreOffice",
    NOT_CLEARED: "the task was updated, but a field sent empty to clear it (--blanks clear) "
    "still holds its value when read back (or could not be read back): clear it in iVvy",
}


def describe_code(code: int | str) -> str:
    """What an error code in the results means (iVvy's specific or general code, or ours)."""
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int):
        return SPECIFIC_CODES.get(code) or ERROR_CODES.get(code) or "an iVvy error code"
    return IMPORTER_CODES.get(code, "")


#: Most jobs one ``batch?action=run`` request may carry.
BATCH_MAX_JOBS = 200
#: How far a request's date may be from the server's clock before it is refused as stale.
STALE_AFTER_SECONDS = 5 * 60
