"""What a run does with each row (create, update, unchanged) and why: the journal's lineage and keys
asked for every row, so a row that already has a task is never created again; ids of unknown
origin refused unless the user said so."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .check import key_of
from .errors import UsageError
from .journal import (
    Known,
    digest_of,
)
from .model import Outcome, Payload, Row
from .options import RunOptions
from .prepare import Prepared
from .read import is_blank
from .results import (
    whole,
)

#: Rows decided together (their lineage and keys asked of the journal in one go).
GROUP = 64

#: What a run does with a row, as ``validate`` and the plan show it.
CREATE, UPDATE, UPDATE_THEIRS, UNCHANGED, INVALID = (
    "create", "update", "update (a task this tool did not make)", "unchanged", "invalid"
)  # fmt: skip


#: Task fields read before an update (what an undo restores).
SNAPSHOT_FIELDS = (
    "name", "description", "status", "priority", "endDatetime", "assignedUserId", "contactId",
    "companyId", "leadId", "venueId", "modifiedDate",
)  # fmt: skip


def snapshot(task: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a task as iVvy lists it that an undo restores (and ``modifiedDate``)."""
    return {name: task.get(name) for name in SNAPSHOT_FIELDS if name in task}


class Lineage:
    """Where each row comes from: the file first imported (its fingerprint, the *origin*) and
    the row's number there, and the reference of the run whose results sheets say so. A row of
    a results sheet of ours carries its run's reference and its number (``run_ref``, ``row``):
    read back into the same target, it is that row of that file; any other row is a row of
    this run's own source."""

    def __init__(self, known: Known, prepared: Prepared, origin: str, ref: str) -> None:
        self._known = known
        self._own = (origin, ref)
        earlier = prepared.earlier or {}
        self._ref_column = earlier.get("run_ref")
        self._line_column = earlier.get("row")
        self._origins: dict[str, str | None] = {}
        #: Whether every row is this run's own source's, at its own number (not a results
        #: sheet of ours, whose rows may name another run's rows, the same one twice).
        self.own_only = self._ref_column is None or self._line_column is None

    def _given(self, row: Row) -> tuple[str, int] | None:
        """The reference and number a row of a results sheet of ours carries, if it does."""
        if self._ref_column is None or self._line_column is None:
            return None
        ref = str(row.cells.get(self._ref_column) or "").strip()
        line = whole(row.cells.get(self._line_column))
        if isinstance(line, str) and line.strip().isdigit():
            line = int(line)
        return (ref, line) if ref and isinstance(line, int) and line > 0 else None

    def of(self, row: Row) -> tuple[str, int, str]:
        """``(origin, number there, reference)`` of ``row``."""
        if (given := self._given(row)) is not None:
            ref, line = given
            if ref not in self._origins:
                record = self._known.run_by_ref(ref)
                self._origins[ref] = record.lineage if record else None
            if (origin := self._origins[ref]) is not None:
                return origin, line, ref
        return self._own[0], row.number, self._own[1]

    @property
    def own_origin(self) -> str:
        return self._own[0]

    def cells(self, row: Row) -> tuple[int, str]:
        """What the results sheet says of ``row``'s place: its number there and the reference,
        as the row carries them (known here or not), else its own."""
        if (given := self._given(row)) is not None:
            return given[1], given[0]
        _, line, ref = self.of(row)
        return line, ref


@dataclass
class Decision:
    """What is to be done with one row: ``verb`` (see :data:`CREATE`…), the payload to send
    (with the task's id for an update) or the outcome it ends with, and its place."""

    verb: str
    row: Row
    checked: Payload | Outcome
    origin: str
    line: int
    key: str | None = None
    task_id: int | None = None
    #: What the row sends (for a row left unchanged: what it would send).
    params: Mapping[str, Any] | None = None


class Planner:
    """Decides, from what the journal knows, what each row becomes: a row whose legacy id
    (``--key``) or whose place (:class:`Lineage`) already has a task is that task's update, or
    unchanged when it would send what was sent last; a row whose source gives a task id updates
    that task (a task this tool did not make is told apart); any other row is created."""

    def __init__(
        self, known: Known, lineage: Lineage, key: str | None, *, clear_blanks: bool = False
    ) -> None:
        self.known = known
        self.lineage = lineage
        self.key = key
        #: ``--blanks clear``: an update whose description cell is blank sends it empty.
        self.clear_blanks = clear_blanks
        #: Whether this run's own source had no row with a task when first asked: then none of
        #: its rows has one (each row asks for its own number, which only this run, holding
        #: the target's lock, writes), and the journal is not asked again.
        self._fresh_origin: bool | None = None

    def _placed(self, origin: str, lines: set[int]) -> dict[int, tuple[int, str]]:
        if self.lineage.own_only and origin == self.lineage.own_origin:
            if self._fresh_origin is None:
                self._fresh_origin = not self.known.has_lineage(origin)
            if self._fresh_origin:
                return {}
        return self.known.lineage(origin, lines)

    def decide(self, group: list[tuple[Row, Payload | Outcome]]) -> list[Decision]:
        places = [self.lineage.of(row) for row, _ in group]
        values = [key_of(row, self.key) if self.key is not None else "" for row, _ in group]
        sending = [isinstance(c, Payload) for _, c in group]
        keyed = self.known.keys(
            self.key or "", {v for v, s in zip(values, sending, strict=True) if v and s}
        )
        wanted: dict[str, set[int]] = {}
        for (origin, line, _), value, s in zip(places, values, sending, strict=True):
            if s and value not in keyed:
                wanted.setdefault(origin, set()).add(line)
        placed = {origin: self._placed(origin, lines) for origin, lines in wanted.items()}
        given = {int(c.params["id"]) for _, c in group if isinstance(c, Payload) and c.is_update}
        ours = self.known.tasks(given) if given else set()
        digests = self.known.digests(given) if given else {}
        decisions = []
        for (row, checked), (origin, line, _), value in zip(group, places, values, strict=True):
            if isinstance(checked, Outcome):
                decisions.append(Decision(INVALID, row, checked, origin, line))
                continue
            params = checked.params
            task, digest = None, None
            if checked.is_update:
                task = int(params["id"])
                digest = digests.get(task)
                here = placed.get(origin, {}).get(line)
                if here is not None and here[0] == task:
                    digest = here[1]
            elif value in keyed:
                task, digest = keyed[value]
            else:
                # Known by its place (a keyed row too: the file may have been imported without
                # its key before).
                task, digest = placed.get(origin, {}).get(line, (None, None))
            decision = Decision(CREATE, row, checked, origin, line, value or None, task, params)
            if task is None:
                pass
            elif digest == digest_of(params):
                unchanged = Outcome("unchanged", task_id=task, warnings=checked.warnings)
                decision.verb, decision.checked = UNCHANGED, unchanged
            else:
                decision.verb = UPDATE if not checked.is_update or task in ours else UPDATE_THEIRS
                if not checked.is_update:
                    params = {**params, "id": task}
                if self.clear_blanks and (cleared := blanks_cleared(checked)):
                    params = {**params, **cleared}
                decision.checked = checked._replace(params=params)
            decisions.append(decision)
        return decisions


#: The fields ``--blanks clear`` clears: the only optional text. iVvy documents no empty value
#: for the ids, ``priority`` or ``status``, and ``name`` and ``endDatetime`` must be given.
CLEARABLE = ("description",)


def blanks_cleared(payload: Payload) -> dict[str, str]:
    """The fields of an update to send empty, to clear them: those mapped to a column whose
    cell is blank in this row."""
    return {
        name: ""
        for name in CLEARABLE
        if name not in payload.params
        and (column := payload.columns.get(name, "")) in payload.row.cells
        and is_blank(payload.row.cells[column])
    }


def message_of(decision: Decision) -> str:
    """The plan for one row, as ``validate`` writes it in the row's message."""
    return plan_message(decision.verb, decision.task_id)


def plan_message(verb: str, task: int | None) -> str:
    """What ``validate`` writes of a row whose plan is ``verb`` (for task ``task``)."""
    return _PLANS.get(verb, "").format(task=task)


_PLANS = {
    CREATE: "plan: create",
    UPDATE: "plan: update task {task}",
    UPDATE_THEIRS: "plan: update task {task}, which this tool did not make",
    UNCHANGED: "plan: unchanged (task {task})",
}


def refuse_their_tasks(
    prepared: Prepared, known: Known, options: RunOptions, target: str
) -> str | None:
    """UsageError when rows give task ids of unknown origin (:func:`unknown_ids`) and the user
    did not say they may update those tasks; when they said so, a note saying how many."""
    unknown = unknown_ids(prepared, known)
    if unknown.rows and not prepared.may_update_theirs(options):
        raise UsageError(unknown.refusal(prepared.id_column, target))
    if not unknown.rows:
        return None
    told = "--update-existing" if options.update_existing else "the mapping file"
    return (
        f"column {prepared.id_column!r} gives {unknown.rows} rows the id of a task they update "
        f"although the id does not come from this tool ({told} says they may); "
        f"{unknown.rows - unknown.ours} of those tasks were not made by this tool"
    )


@dataclass(frozen=True)
class UnknownIds:
    """Rows whose task id does not come from this tool: how many, how many of those name a
    task this tool made all the same (from other rows), and a few of the ids."""

    rows: int
    ours: int
    sample: tuple[int, ...]
    results_sheet: bool

    def refusal(self, column: str | None, target: str) -> str:
        ids = ", ".join(map(str, self.sample)) + ("…" if self.rows > len(self.sample) else "")
        why = (
            "ids this tool did not write for this target in its results"
            if self.results_sheet
            else "ids of unknown origin: this source is not a results sheet this tool wrote"
        )
        return (
            f"column {column!r} gives {self.rows} rows a task id ({ids}), {why}. A run would "
            f"overwrite those tasks in {target} ({self.ours} of them made by this tool from "
            f"other rows, {self.rows - self.ours} not made by it). If the column holds another "
            f'system\'s ids, give --key {column!r} (or map it to "ignore" in a --mapping '
            "file); to update those iVvy tasks on purpose, give --update-existing (or map the "
            'column to "id" in a --mapping file). Nothing was sent'
        )


def unknown_ids(prepared: Prepared, known: Known) -> UnknownIds:
    """The rows whose task id does not come from this tool: any in a column of the source's own
    (a legacy id, a hand-typed one); in a results sheet of ours, those of a run into another
    target (their reference unknown here) or naming a task this journal does not know."""
    if not prepared.task_rows:
        return UnknownIds(0, 0, (), prepared.earlier is not None)
    ours = known.tasks({task for _, task in prepared.task_rows})
    trusted: dict[str, bool] = {}
    unknown: Counter[int] = Counter()
    for (ref, task), n in prepared.task_rows.items():
        if prepared.earlier is not None:
            if ref not in trusted:
                trusted[ref] = not ref or known.run_by_ref(ref) is not None
            if trusted[ref] and task in ours:
                continue
        unknown[task] += n
    made = sum(n for task, n in unknown.items() if task in ours)
    sample = tuple(sorted(unknown)[:5])
    return UnknownIds(sum(unknown.values()), made, sample, prepared.earlier is not None)


def _with_key(
    prepared: Prepared, known: Known, options: RunOptions, warnings: list[str]
) -> RunOptions:
    """``options``, with the key of the run whose results sheet this is when none is given:
    its rows are matched by that column as they were then."""
    if options.key is not None or not prepared.refs:
        return options
    columns = set()
    for ref in prepared.refs:
        record = known.run_by_ref(ref)
        if record is not None:
            columns.add(record.options.get("key"))
    column = columns.pop() if len(columns) == 1 else None
    if column is None or column not in prepared.data_headers:
        return options
    warnings.append(f"rows are matched by column {column!r}, the --key of the run they came from")
    return options.replace(key=column)


#: The plan's name for rows of a results sheet that ``--only`` did not pick.
KEPT = "kept (not picked by --only)"


def verdict_of(decision: Decision) -> tuple[str, Outcome]:
    """What ``validate`` says of a row planned: its verb in the plan, and its verdict (valid,
    its message the plan; or why not)."""
    checked = decision.checked
    if decision.verb == INVALID:
        assert isinstance(checked, Outcome)
        return INVALID if checked.result == "invalid" else KEPT, checked
    return decision.verb, Outcome("valid", message=message_of(decision), warnings=checked.warnings)


def _planned(
    planner: Planner,
    checked: Iterator[tuple[Row, Payload | Outcome]],
    plan: Counter[str],
    on_verdict: Callable[[Row, Outcome, str], None] | None = None,
) -> Iterator[tuple[Row, Outcome]]:
    """Each row's verdict for ``validate``: valid (its message the plan), or why not; the plan
    counted in ``plan`` (and each row given to ``on_verdict`` with its verb)."""
    group: list[tuple[Row, Payload | Outcome]] = []

    def verdicts() -> Iterator[tuple[Row, Outcome]]:
        for decision in planner.decide(group):
            verb, verdict = verdict_of(decision)
            plan[verb] += 1
            if on_verdict is not None:
                on_verdict(decision.row, verdict, verb)
            yield decision.row, verdict

    for item in checked:
        group.append(item)
        if len(group) >= GROUP:
            yield from verdicts()
            group = []
    yield from verdicts()
