"""What a run may be told: :class:`RunOptions`, the command line's options as one frozen value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from .dates import DateOrder
from .errors import UsageError
from .map import MappingFile
from .reconcile import SETTLE
from .send import (
    DEFAULT_CALLBACK,
)

VENUE_ZONE = "venue"


@dataclass(frozen=True)
class RunOptions:
    """What a run may be told (each ``None`` means: the mapping file's option, else the
    profile's, else the default).

    ``timezone``: IANA zone of the sheet's times, or ``"venue"`` for the zone of ``venue_id``;
    ``date_order``: ``dmy`` or ``mdy`` for dates like 03/04/2026; ``default_time``: time of day
    given to dates without one (09:00); ``key``: a column that identifies a row (the same value
    twice is refused); ``all_or_nothing``: send nothing when any row is invalid.
    """

    results: Path | None = None
    concurrency: int = 32
    rate: float | None = None
    sheet: str | None = None
    encoding: str | None = None
    profile: str | None = None
    #: A mapping file's path, or its value (:func:`~importer.map.load_mapping_file`).
    mapping: Path | MappingFile | None = None
    timezone: str | None = None
    venue_id: int | None = None
    date_order: DateOrder | None = None
    default_time: clock_time | None = None
    key: str | None = None
    all_or_nothing: bool = False
    via: str = "rows"
    #: The journal file (default: one per target under the user's data directory).
    state: Path | None = None
    #: Go on with this source's stopped run; begin a new run although one was made before.
    resume: bool = False
    new_run: bool = False
    #: For a results sheet read back: the earlier results whose rows are sent again.
    only: frozenset[str] | None = None
    #: With ``--key``: a task deleted in iVvy since it was imported is created again.
    recreate_missing: bool = False
    #: Cells corrected by a person (``serve``): (row number, column) → the value to read.
    fixes: Mapping[tuple[int, str], Any] | None = None
    #: Batch mode: the callbackUrl sent with each batch, and how long a batch may take.
    callback_url: str = DEFAULT_CALLBACK
    batch_wait: float = 300.0
    #: How long a lost create waits before it is looked up (late writes, lagging reads).
    settle: float = SETTLE
    #: Whether rows may update tasks this tool did not make (ids of unknown origin): ``None``
    #: when a mapping file that names the id column says so, ``False`` never (the page asks
    #: instead), ``True`` (``--update-existing``) always.
    update_existing: bool | None = None

    def __post_init__(self) -> None:
        # Paths may be given as text (``RunOptions(results="out.xlsx")``).
        for name in ("results", "state", "mapping"):
            value = getattr(self, name)
            if isinstance(value, str | os.PathLike) and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))


def parse_clock(text: str) -> clock_time:
    """``HH:MM`` as a time of day; UsageError otherwise."""
    try:
        return datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise UsageError(f"a time of day is written HH:MM (24-hour), not {text!r}") from None


#: The options of a call that gives none (a frozen value: safe to share as a default).
DEFAULTS = RunOptions()
