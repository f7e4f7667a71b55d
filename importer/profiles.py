"""Built-in profiles for the task exports of other CRMs (see shared/legacy-exports.md).

A profile names the columns of one system's export, that system's status and priority words, the
column that identifies a row across runs (suggested as ``--key``), and the zone its times are in
when the export says so. Legacy ids (owners, parents) are never sent as iVvy ids: their columns are
kept in the results only. A mapping file can override everything a profile decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    #: source column → task field (or ``endTime``, a time column joined to the due date)
    columns: dict[str, str]
    status: dict[str, int | None] = field(default_factory=dict)
    priority: dict[str, str | None] = field(default_factory=dict)
    key: str | None = None
    #: Columns of the system's own ids (owners, parents): kept in the results, never sent.
    legacy: tuple[str, ...] = ()
    timezone: str | None = None
    #: Whether whole numbers in the due column are epoch milliseconds (HubSpot's hs_timestamp).
    epoch_ms: bool = False


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="salesforce",
            title="Salesforce (Task object, Data Loader or report export)",
            columns={
                "Subject": "name",
                "ActivityDate": "endDatetime",
                "Due Date": "endDatetime",
                "Status": "status",
                "Priority": "priority",
                "Description": "description",
                "Comments": "description",
                "Full Comments": "description",
            },
            status={
                "Not Started": 0,
                "In Progress": 1,
                "Completed": 4,
                "Waiting on someone else": 2,
                "Deferred": 2,
            },
            priority={"High": "high", "Normal": "medium", "Low": "low"},
            key="Id",
            legacy=("OwnerId", "WhoId", "WhatId", "AccountId", "CreatedById"),
        ),
        Profile(
            name="hubspot",
            title="HubSpot (task properties export)",
            columns={
                "hs_task_subject": "name",
                "Task Title": "name",
                "hs_timestamp": "endDatetime",
                "hs_task_status": "status",
                "Task Status": "status",
                "hs_task_priority": "priority",
                "hs_task_body": "description",
                "Notes": "description",
            },
            status={
                "NOT_STARTED": 0,
                "IN_PROGRESS": 1,
                "WAITING": 2,
                "COMPLETED": 4,
                "DEFERRED": 2,
            },
            # HubSpot's "NONE" means no priority was set: the task gets none.
            priority={"LOW": "low", "MEDIUM": "medium", "HIGH": "high", "NONE": None},
            key="hs_object_id",
            legacy=("hubspot_owner_id", "hs_created_by"),
            epoch_ms=True,
        ),
        Profile(
            name="pipedrive",
            title="Pipedrive (activities export)",
            columns={
                "Activity - Subject": "name",
                "Activity - Due date": "endDatetime",
                "Activity - Due time": "endTime",
                "Activity - Done": "status",
                "Activity - Note": "description",
            },
            # The Done column: 1/0, Done/To do, or a checkbox.
            status={"1": 4, "0": 0, "Done": 4, "To do": 0, "True": 4, "False": 0},
            key="Activity - ID",
            legacy=("Activity - Assigned to user", "Deal - ID", "Person - ID", "Organization - ID"),
            timezone="UTC",  # Pipedrive writes due times in UTC
        ),
        Profile(
            name="zoho",
            title="Zoho CRM (Tasks module export)",
            columns={
                "Subject": "name",
                "Due Date": "endDatetime",
                "Status": "status",
                "Priority": "priority",
                "Description": "description",
            },
            status={
                "Not Started": 0,
                "Deferred": 2,
                "In Progress": 1,
                "Completed": 4,
                "Waiting for input": 2,
                "Waiting on someone else": 2,
            },
            priority={
                "Highest": "high",
                "High": "high",
                "Normal": "medium",
                "Low": "low",
                "Lowest": "low",
            },
            key="Record Id",
            legacy=("Task Owner", "Task Owner Id", "What_Id", "Who_Id"),
        ),
        Profile(
            name="dynamics",
            title="Dynamics 365 (task entity export)",
            columns={
                "subject": "name",
                "scheduledend": "endDatetime",
                "Due": "endDatetime",
                "statuscode": "status",
                "Status Reason": "status",
                "prioritycode": "priority",
                "description": "description",
            },
            status={
                "Not Started": 0,
                "In Progress": 1,
                "Waiting on someone else": 2,
                "Deferred": 2,
                "Completed": 4,
                "Canceled": 3,
            },
            priority={"Low": "low", "Normal": "medium", "High": "high"},
            key="activityid",
            legacy=("ownerid", "regardingobjectid", "Owner", "Regarding"),
        ),
    )
}
