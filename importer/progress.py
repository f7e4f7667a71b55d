"""Progress as a run goes: one counter that every consumer (the CLI's bar, the page's live
progress, a scheduler's ``on_event``) reads as :class:`~importer.model.ProgressEvent` values."""

from __future__ import annotations

from collections.abc import Callable

from .model import Outcome, ProgressEvent
from .send import SendStats

OnEvent = Callable[[ProgressEvent], None]
FAILURES = frozenset({"invalid", "failed"})


class Tally:
    """Counts a run's rows as the journal records them, and tells ``on_event`` of each."""

    def __init__(self, on_event: OnEvent | None = None) -> None:
        self._on_event = on_event
        self.total = 0
        self.done = 0
        self.failures = 0
        #: The send stage's statistics, live (the 429s so far).
        self.sends: list[SendStats] = []

    @property
    def rate_limited(self) -> int:
        return sum(s.rate_limited for s in self.sends)

    def send_stats(self) -> SendStats:
        """Statistics for one pass of the send stage, counted in the events."""
        stats = SendStats()
        self.sends.append(stats)
        return stats

    def started(self, total: int) -> None:
        self.total = total
        self._tell("started")

    def row(self, number: int, outcome: Outcome) -> None:
        self.done += 1
        self.failures += outcome.result in FAILURES
        self._tell("row", number, outcome)

    def finished(self) -> None:
        self._tell("finished")

    def _tell(self, kind: str, number: int | None = None, outcome: Outcome | None = None) -> None:
        if self._on_event is not None:
            event = ProgressEvent(kind, self.total, self.done, self.failures,  # type: ignore[arg-type]
                                  self.rate_limited, number, outcome)  # fmt: skip
            self._on_event(event)
