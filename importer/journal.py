"""Record: every row's state as it changes, the single source of each row's outcome.

This first version keeps the journal in memory, for one run; the results sheet is written from
it, so a row has exactly one outcome.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Literal

from .model import Outcome

State = Literal["pending", "in_flight", "done"]


class MemoryJournal:
    """Row number → state and, once done, outcome; ``on_done`` hears of each outcome."""

    def __init__(self, on_done: Callable[[Outcome], None] | None = None) -> None:
        self._state: dict[int, State] = {}
        self._outcome: dict[int, Outcome] = {}
        self._on_done = on_done

    def pending(self, number: int) -> None:
        self._state[number] = "pending"

    def in_flight(self, number: int) -> None:
        self._state[number] = "in_flight"

    def done(self, number: int, outcome: Outcome) -> None:
        if self._state.get(number) == "done":
            raise RuntimeError(f"row {number} already has an outcome")
        self._state[number] = "done"
        self._outcome[number] = outcome
        if self._on_done is not None:
            self._on_done(outcome)

    def state(self, number: int) -> State | None:
        return self._state.get(number)

    def outcome(self, number: int) -> Outcome | None:
        return self._outcome.get(number)

    def counts(self) -> Counter[str]:
        return Counter(o.result for o in self._outcome.values())

    def codes(self) -> Counter[str]:
        """Rows with an error code, by code."""
        return Counter(str(o.error_code) for o in self._outcome.values() if o.error_code)
