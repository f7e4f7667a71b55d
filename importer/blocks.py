"""A check of a whole source a batch at a time, column by column (``validate``'s fast path).

Most rows of a sheet are plain: every value already of its kind, valid as it is, nothing the
journal must be asked about. For those, the rows are never made one by one: the checks run on
whole columns (:func:`~importer.validate.plain_rows`), each distinct value judged once; the plan
of a row that creates a task, or that updates one when no journal knows the target, is read off
the id column; and our results columns are made whole, for the results writer to write a
column at a time (:class:`~importer.results.Block`). Every other row (one that cannot be read,
fails a check, carries a warning of the checks, repeats a key, or gives an id a journal must
be asked about) is made and checked as :func:`~importer.check.checked_rows` does it, then
planned by the :class:`~importer.plan.Planner`, in its place. A differential test holds this
path to the row path byte for byte, results sheet and summary alike.

It is taken by :func:`~importer.pipeline.validate_source` for a check of every row, offline,
of a source that is not a results sheet, when the journal knows nothing of the source's rows
(it has no lineage for the file and no keys under ``--key``): then no create needs the journal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import compress, repeat
from operator import and_, is_, not_
from typing import Any

from .check import Checker
from .journal import Known
from .model import Outcome, Payload, Row
from .normalise import Normalised
from .plan import CREATE, GROUP, UPDATE_THEIRS, Lineage, Planner, plan_message, verdict_of
from .prepare import Prepared
from .results import Block, outcome_cells
from .summary import IDENTICAL
from .validate import filled, plain_rows


def takes_blocks(prepared: Prepared, known: Known, origin: str, key: str | None) -> bool:
    """Whether a check of every row of ``prepared`` can go a block at a time: a source of its
    own (not a results sheet), whose rows no journal has made tasks of (by the file's place or
    by ``key``)."""
    if prepared.earlier is not None or known.has_lineage(origin):
        return False
    return key is None or not known.knows_keys(key)


def checked_blocks(
    prepared: Prepared,
    known: Known,
    planner: Planner,
    lineage: Lineage,
    plan: Counter[str],
    *,
    key: str | None = None,
) -> Iterator[Block]:
    """Every row's verdict and plan (offline), as ``validate`` writes them, a batch at a time:
    see the module. The plan is counted in ``plan``."""
    checker = Checker(prepared, None, key=key)
    # Without a journal, an update's task is no task this tool made, whatever its id: its plan
    # is read off the id. With one, the journal is asked (the row goes the planner's way).
    ids_plain = known.empty
    early, prepared.early = prepared.early, None
    made = early.batches(prepared.rules) if early is not None else None
    if early is not None and made is not None:  # normalised by the first pass, by these rules
        checker.normaliser = early.normaliser
    else:
        made = map(checker.normaliser.batch, prepared.source.batches())
    for normalised in made:
        yield _block(normalised, checker, planner, lineage, plan, ids_plain)


def _block(
    normalised: Normalised,
    checker: Checker,
    planner: Planner,
    lineage: Lineage,
    plan: Counter[str],
    ids_plain: bool,
) -> Block:
    numbers = normalised.source.numbers
    count = len(numbers)
    columns = {name: values for name, _, values in normalised.plan}
    plain = plain_rows(columns, count)
    for i in normalised.bad:
        plain[i] = False
    ids = columns.get("id")
    given = filled(ids) if ids is not None else None
    if given is not None and not ids_plain:
        plain = list(map(and_, plain, map(not_, given)))
    checks = checker.check(normalised, plain)
    rows, checked = checks.rows, checks.checked

    # Our columns, as a plain row has them: valid, with its plan and its warnings.
    creating = plan_message(CREATE, None)
    if given is None or not any(given):
        messages: list[Any] = [creating] * count
    else:
        assert ids is not None
        messages = [
            plan_message(UPDATE_THEIRS, v) if g else creating
            for v, g in zip(ids, given, strict=True)
        ]
    warnings: list[Any] = [""] * count
    for i, notes in normalised.notes.items():
        warnings[i] = "; ".join(notes)
    for i, said in checks.identical.items():
        warnings[i] = f"{warnings[i]}; {said}" if warnings[i] else said
    ours: list[list[Any]] = [
        list(numbers), ["valid"] * count, [None] * count, [None] * count, [None] * count,
        messages, warnings, [""] * count,
    ]  # fmt: skip
    results: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    identical = [numbers[i] for i in checks.identical]

    # The other rows, made and planned one by one, in order.
    others = [i for i, c in enumerate(checked) if c is not None]
    plain_count = count - len(others)
    if plain_count:
        results["valid"] += plain_count
        updates = sum(compress(given, map(is_, checked, repeat(None)))) if given else 0
        for verb, n in ((CREATE, plain_count - updates), (UPDATE_THEIRS, updates)):
            if n:
                plan[verb] += n
    for start in range(0, len(others), GROUP):
        places = others[start : start + GROUP]
        group: list[tuple[Row, Payload | Outcome]] = [(rows[i], checked[i]) for i in places]  # type: ignore[misc]
        for i, decision in zip(places, planner.decide(group), strict=True):
            verb, verdict = verdict_of(decision)
            plan[verb] += 1
            results[verdict.result] += 1
            if verdict.error_code is not None:
                codes[str(verdict.error_code)] += 1
            if verdict.warnings and any(w.startswith(IDENTICAL) for w in verdict.warnings):
                identical.append(numbers[i])
            for column, value in zip(
                ours, outcome_cells(decision.row, verdict, lineage.cells(decision.row)), strict=True
            ):
                column[i] = value
    identical.sort()
    return Block(numbers, normalised.source.columns, ours, results, codes, identical)


__all__ = ["checked_blocks", "takes_blocks"]
