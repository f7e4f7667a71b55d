"""The facts of the iVvy API reference that the sandbox enforces, written from
``shared/ivvy-api.md`` and the public ``ivvycode/apidocs`` pages, not from the importer.

The sandbox must be an independent model of iVvy: if it read the importer's own tables
(``importer/fields.py``), a test comparing the importer's validator with the sandbox would compare
a table with itself. So these facts are written here a second time, on purpose, from the reference;
a test (``tests/test_sandbox_independent.py``) checks that nothing in the sandbox imports the
pipeline.
"""

from __future__ import annotations

from typing import Literal

ParamType = Literal["integer", "string", "timestamp", "priority", "status"]

#: addOrUpdateTask's parameters (crm/add-or-update-task.md), in the reference's order, with their
#: type and whether a create needs them. The reference checks them in this order and reports the
#: first bad one.
TASK_PARAMS: tuple[tuple[str, ParamType, bool], ...] = (
    ("id", "integer", False),
    ("venueId", "integer", False),
    ("leadId", "integer", False),
    ("contactId", "integer", False),
    ("companyId", "integer", False),
    ("name", "string", True),
    ("endDatetime", "timestamp", True),
    ("priority", "priority", False),
    ("assignedUserId", "integer", False),
    ("status", "status", False),
    ("description", "string", False),
)
TASK_PARAM_NAMES = frozenset(name for name, _, _ in TASK_PARAMS)

#: ``status``: 0 Not Started, 1 In Progress, 2 On Hold, 3 Cancelled, 4 Completed.
TASK_STATUSES = (0, 1, 2, 3, 4)
#: ``priority``.
TASK_PRIORITIES = ("low", "medium", "high")

#: The getTaskList record (getTaskList's documented result fields).
TASK_RECORD_KEYS = (
    "id", "venueId", "bookingId", "leadId", "name", "description", "status", "contactId",
    "companyId", "companyContactId", "assignedUserId", "assignedUserFullName",
    "assignedUserEmail", "priority", "endDatetime", "progress", "createdDate", "modifiedDate",
)  # fmt: skip

#: iVvy's timestamp, ``yyyy-mm-dd HH:mm:ss``, UTC, with an optional `` UTC`` suffix.
TIMESTAMP = "%Y-%m-%d %H:%M:%S"
#: A request whose date is further than this from the server's clock is stale (401/23005).
STALE_SECONDS = 5 * 60
#: Most jobs one ``batch?action=run`` may carry (24448 beyond).
MAX_BATCH_JOBS = 200

# Specific codes, as the reference names them.
STALE = 23005
DOES_NOT_VALIDATE = 23016
IS_REQUIRED = 23017
BATCH_NOT_SAVED = 24091
BATCH_JOB_FORMAT = 24092
BATCH_EMPTY_PARAMETER = 24093
CONTACT_NOT_FOUND = 24096
BATCH_NOT_FOUND_PROGRESS = 24105
BATCH_NOT_COMPLETED = 24114
BATCH_NOT_FOUND_RESULTS = 24115
COMPANY_NOT_FOUND = 24153
RACE = 24299  # a 429 that means "busy, try again" (the reference uses it for a booking race)
LEAD_NOT_FOUND = 24389
TASK_CONTACT_NOT_FOUND = 24390
TASK_COMPANY_NOT_FOUND = 24391
TASK_NOT_FOUND = 24392
INVALID_DATA = 24395
ONE_PARENT = 24396
TOO_MANY_JOBS = 24448
