"""What a run did: :class:`RunSummary`, for people, schedulers and the results' Summary sheet."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .dates import DateRules
from .errors import RunFailed, UsageError
from .model import SUCCESSFUL, VANISHED, Outcome, Row, RowResult
from .options import RejectLimit
from .results import Block, open_results

#: Results that are rejects (``--max-rejects``): the row needs a person, the run went on.
REJECTED = frozenset({"invalid", "failed"})


@dataclass
class RunSummary:
    """What a run did, for people (``describe``) and schedulers (``as_dict``, ``exit_code``)."""

    source: Path
    results: Path | None
    target: str
    counts: Counter[str] = field(default_factory=Counter)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    #: Rows that need a person, by error code.
    codes: Counter[str] = field(default_factory=Counter)
    #: 429s met while sending, and creates whose lost answer was found by a look-up.
    rate_limited: int = 0
    reconciled: int = 0
    #: Time spent sending (the checks of each row included, as rows stream to the send stage).
    send_seconds: float = 0.0
    #: Whether the run was stopped (Ctrl-C, SIGTERM) before it went through every row.
    interrupted: bool = False
    #: Why iVvy ended the session mid-run (462 Session Expired, 463 Key Revoked), if it did.
    session_ended: str | None = None
    #: The journal (its file, or its database's URL without a password) and this run's number
    #: in it (``None`` for ``validate``).
    journal: str | None = None
    run_id: int | None = None
    #: ``validate``: what a run would do with the rows (create, update…: see :data:`CREATE`).
    plan: Counter[str] = field(default_factory=Counter)
    #: ``validate``: why a run of this source would be refused (exit 2), if it would be; and
    #: when this very file was imported into the target before, what that run did.
    refusal: str | None = None
    previous: str | None = None
    #: How the dates were read (decided from every row): a re-check of a few rows is one with
    #: the full check before it only while these stay the same.
    rules: DateRules | None = None
    #: A keyed run: rows that failed on the run before and were sent again, and the keys that
    #: failed the same way on several runs in a row (``key``, ``error_code``, ``runs``).
    retried: int = 0
    failing_again: list[dict[str, Any]] = field(default_factory=list)
    #: Rows invalid or failed that still let the run count as done (exit 0), when given.
    reject_limit: RejectLimit | None = None
    #: A keyed run whose source looked broken (empty, or much shorter than the last run's):
    #: why the keys it no longer holds were not cancelled (exit 1).
    missing_refused: str | None = None
    #: ``--blanks clear``: updated rows whose task still holds a field sent empty to clear it,
    #: or could not be read back (exit 1).
    not_cleared: int = 0
    #: For an undo, the import run it undoes.
    undoes: int | None = None

    #: Where :meth:`rows` reads the results from (set by the API, the run or the check).
    _rows: Callable[[], Iterator[RowResult]] | None = field(default=None, repr=False)

    @property
    def row_count(self) -> int:
        """How many rows the summary counts."""
        return sum(self.counts.values())

    def rows(self) -> Iterator[RowResult]:
        """Every row with its cells and its outcome, in source order, streamed from the
        results (bounded memory: a million rows are never held at once)."""
        if self._rows is None:
            raise UsageError("this summary has no rows to give (no results were written)")
        return self._rows()

    def rows_from(self, source: Callable[[], Iterator[RowResult]]) -> None:
        self._rows = source

    @property
    def needs_attention(self) -> bool:
        """Whether a person must look: a row that is not created, updated, unchanged or valid
        (invalid, failed, skipped), a run stopped before its end or by iVvy, or a refusal."""
        return self.exit_code != 0

    def raise_for_failures(self) -> RunSummary:
        """Raise :class:`~importer.errors.RunFailed` (carrying this summary) when the run
        :attr:`needs_attention`, for a scheduler to fail its task; else this summary."""
        if not self.needs_attention:
            return self
        if self.refusal:
            why = self.refusal
        elif self.missing_refused and not set(self.counts) - SUCCESSFUL - VANISHED:
            why = self.missing_refused
        elif self.not_cleared and not set(self.counts) - SUCCESSFUL - VANISHED:
            why = f"{self.not_cleared} updated rows did not clear a field (NOT_CLEARED)"
        elif self.session_ended:
            why = f"iVvy ended the session ({self.session_ended})"
        elif self.interrupted:
            why = "the run was stopped before its end"
        else:
            bad = {r: n for r, n in self.counts.items() if r not in SUCCESSFUL | VANISHED}
            why = ", ".join(f"{n} {r}" for r, n in sorted(bad.items())) + " rows"
            if self.codes:
                why += " (" + ", ".join(f"{c}: {n}" for c, n in self.codes.most_common(5)) + ")"
        raise RunFailed(self, f"{why}; results: {self.results}")

    @property
    def exit_code(self) -> int:
        """0 when every row is created, updated or unchanged; 1 when any needs a person; 130
        when the run was stopped; 3 when iVvy ended the session (expired, key revoked); 2 when
        ``validate`` found that the run would be refused."""
        if self.refusal:
            return 2
        if self.session_ended:
            return 3
        if self.interrupted:
            return 130
        if self.missing_refused or self.not_cleared:
            return 1
        needing = set(self.counts) - SUCCESSFUL - VANISHED
        if not needing:
            return 0
        if self.reject_limit is not None and needing <= REJECTED:
            return 0 if self.reject_limit.allows(self.rejects, self.row_count) else 1
        return 1

    @property
    def rejects(self) -> int:
        """Rows ``invalid`` or ``failed``."""
        return sum(n for result, n in self.counts.items() if result in REJECTED)

    def as_dict(self) -> dict[str, Any]:
        """The summary a scheduler reads (``--json``; its schema is in the README)."""
        return {
            "source": str(self.source),
            "results": str(self.results),
            "journal": str(self.journal) if self.journal else None,
            "run": self.run_id,
            "target": self.target,
            "rows": self.row_count,
            "counts": dict(self.counts),
            "error_codes": {str(code): n for code, n in self.codes.items()},
            "plan": dict(self.plan) if self.plan else None,
            "refusal": self.refusal,
            "previous": self.previous,
            "started": self.started.isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.row_count / self.seconds, 1) if self.seconds else None,
            "warnings": self.warnings,
            "rate_limited": self.rate_limited,
            "reconciled": self.reconciled,
            "interrupted": self.interrupted,
            "session_ended": self.session_ended,
            "retried": self.retried,
            "failing_again": self.failing_again,
            "rejects": self.rejects,
            "max_rejects": None if self.reject_limit is None else str(self.reject_limit),
            "missing_refused": self.missing_refused,
            "not_cleared": self.not_cleared,
            "exit_code": self.exit_code,
        }

    def sheet_lines(self) -> list[tuple[str, Any]]:
        """The summary as the XLSX results' Summary sheet shows it."""
        lines: list[tuple[str, Any]] = [
            (f"rows {result}", n) for result, n in sorted(self.counts.items())
        ]
        lines += [
            ("rows", self.row_count),
            ("started (UTC)", self.started.replace(tzinfo=None, microsecond=0)),
            ("seconds", round(self.seconds, 1)),
            ("rows per second", round(self.row_count / self.seconds, 1) if self.seconds else None),
            ("source", str(self.source)),
            ("target", self.target),
            ("journal", str(self.journal or "")),
            ("run", self.run_id),
            ("answers 429 (slowed down)", self.rate_limited),
            ("lost answers found by a look-up", self.reconciled),
            ("interrupted", "yes" if self.interrupted else "no"),
        ]
        lines += [(f"plan: {verb}", n) for verb, n in sorted(self.plan.items())]
        if self.refusal:
            lines.append(("a run would be refused", self.refusal))
        lines += [("warning", w) for w in self.warnings]
        return lines

    def describe(self) -> str:
        parts = ", ".join(f"{n} {result}" for result, n in sorted(self.counts.items()))
        plan = ", ".join(f"{n} {verb}" for verb, n in sorted(self.plan.items()))
        return (
            f"{self.row_count} rows in {self.seconds:.1f} s: {parts or 'nothing to do'}"
            + (f" (plan: {plan})" if plan else "")
            + f". Results: {self.results}"
            + (f" (run {self.run_id})" if self.run_id is not None else "")
        )


#: How a row's warning says it repeats an earlier row.
IDENTICAL = "identical to row "


def write_results(
    summary: RunSummary,
    path: Path,
    headers: list[str],
    rows: Iterable[tuple[Row, Outcome, tuple[int | None, str] | None] | Block],
    *,
    ending: Callable[[], None] | None = None,
) -> RunSummary:
    """The results sheet at ``path`` (every row with its outcome and its place, in order; whole
    or not at all), with the rows counted into the summary by result and by code as they are
    written: one way for a run, a check and an undo alike. ``ending`` runs just before the
    Summary sheet is written (to complete the summary)."""
    counts: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    identical: list[int] = []  # rows identical to an earlier one (told on the terminal too)
    with open_results(path, headers) as sheet:
        for item in rows:
            if item.__class__ is Block:  # a check's rows, a column at a time
                assert isinstance(item, Block)
                counts.update(item.results)
                codes.update(item.codes)
                identical += item.identical
                sheet.add_block(item)
                continue
            row, outcome, place = item  # type: ignore[misc]
            counts[outcome.result] += 1
            if outcome.error_code is not None:
                codes[str(outcome.error_code)] += 1
            if outcome.warnings and any(w.startswith(IDENTICAL) for w in outcome.warnings):
                identical.append(row.number)
            sheet.add(row, outcome, place)
        summary.counts, summary.codes = counts, codes
        if identical:
            shown = ", ".join(map(str, identical[:5])) + (", …" if len(identical) > 5 else "")
            many = len(identical) > 1
            summary.warnings.append(
                f"{len(identical):,} {'rows are' if many else 'row is'} identical to an earlier "
                f"row (row{'s' if many else ''} {shown}; the results' warnings name the row each "
                "repeats): each is a task of its own"
            )
        if ending is not None:
            ending()
        sheet.close(summary.sheet_lines(), codes)
    return summary
