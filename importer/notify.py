"""Tell someone: a run that needs attention (and, once, the run after it that recovered) posts its
JSON summary to a webhook, with a line of text a Slack incoming webhook shows as it is.

The summary is the ``--json`` one: it names the target by its address and API key, never the
secret. A webhook that cannot be reached does not change how the run ends: the run says so in
its warnings.
"""

from __future__ import annotations

from typing import Any

import httpx

from .journal import Journal, RunRecord
from .model import SUCCESSFUL
from .summary import RunSummary

#: How long a webhook may take to answer.
TIMEOUT = 10.0


def previous_run(journal: Journal, record: RunRecord) -> RunRecord | None:
    """The run before ``record`` of the same job: the same source file, or (``--key``) the
    same key column, into the same target."""
    key = record.options.get("key")
    for earlier in journal.runs(record.target):
        if earlier.id >= record.id or earlier.kind != "import":
            continue
        if earlier.source == record.source or (key and earlier.options.get("key") == key):
            return earlier
    return None


def needed_attention(journal: Journal, record: RunRecord) -> bool:
    """Whether run ``record`` ended with rows that need a person, or did not end."""
    if record.status != "finished":
        return True
    counts = journal.row_counts(record.id)
    return any(n for result, n in counts.items() if result not in SUCCESSFUL)


def message(summary: RunSummary, kind: str) -> dict[str, Any]:
    """What the webhook is sent: ``kind`` (``attention`` or ``recovered``), a line of text,
    and the run's summary."""
    source = summary.source.name
    counts = ", ".join(f"{n} {r}" for r, n in sorted(summary.counts.items()))
    if kind == "attention":
        text = (
            f"task-import: run {summary.run_id} of {source} needs attention "
            f"(exit {summary.exit_code}: {counts}); results: {summary.results}"
        )
    else:
        text = f"task-import: run {summary.run_id} of {source} is done again ({counts})"
    return {"kind": kind, "text": text, "summary": summary.as_dict()}


def notify(url: str, journal: Journal, record: RunRecord, summary: RunSummary) -> str | None:
    """Post to ``url`` when this run needs attention, or when it is the first good run after
    one that did; None, or a warning saying why the webhook was not told."""
    if summary.needs_attention:
        kind = "attention"
    else:
        earlier = previous_run(journal, record)
        if earlier is None or not needed_attention(journal, earlier):
            return None
        kind = "recovered"
    try:
        answer = httpx.post(url, json=message(summary, kind), timeout=TIMEOUT)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        return f"--notify: the webhook was not told ({type(exc).__name__}: {exc})"
    return None
