"""Row checks: each row normalised and validated (online when a directory is given), a key given
twice refused, identical rows warned of; a results sheet's rows kept with their earlier outcome."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import compress, repeat
from itertools import count as count_from
from operator import is_not, not_
from typing import Any, NamedTuple, get_args

from .directory import Directory
from .fields import DUPLICATE_KEY
from .model import VANISHED, Outcome, Payload, Result, Row
from .normalise import Normalised
from .prepare import Prepared
from .read import is_blank
from .results import (
    whole,
)
from .summary import IDENTICAL
from .validate import validate

#: How many rows' contents are remembered to warn of identical rows (memory stays bounded).
_IDENTICAL_LIMIT = 2_000_000


def checked_rows(
    prepared: Prepared,
    directory: Directory | None = None,
    *,
    default_venue: int | None = None,
    key: str | None = None,
    only: frozenset[str] | None = None,
    numbers: Collection[int] | None = None,
) -> Iterator[tuple[Row, Payload | Outcome]]:
    """Every row with its payload ready to send, or with the ``invalid`` outcome that stops it:
    normalised, validated (online when a ``directory`` is given), the same ``key`` value twice
    refused (:func:`prepare` checked the column exists), identical rows warned of. For a
    results sheet read back with ``only``, a row whose earlier result is not among ``only``
    keeps its earlier outcome. With ``numbers``, only the rows of those numbers (the others are
    read, not checked: a re-check of rows a person corrected; the checks across rows, a key
    given twice and identical rows, then see only these rows)."""
    checker = Checker(prepared, directory, default_venue=default_venue, key=key, only=only)
    for batch in prepared.source.batches(numbers=numbers):
        normalised = checker.normaliser.batch(batch)
        checks = checker.check(normalised)
        yield from zip(checks.rows, checks.checked, strict=True)


class Checks(NamedTuple):
    """A batch's rows checked (see :meth:`Checker.check`): each row (None for a plain one), its
    payload or outcome (None for a plain one), and a plain row's warning that it repeats an
    earlier row, by its place in the batch."""

    rows: list[Row | None]
    checked: list[Payload | Outcome | None]
    identical: dict[int, str]


class Checker:
    """The checks of :func:`checked_rows`, a batch at a time (:meth:`check`), the checks across
    rows (a key given twice, identical rows) remembering every batch before."""

    def __init__(
        self,
        prepared: Prepared,
        directory: Directory | None = None,
        *,
        default_venue: int | None = None,
        key: str | None = None,
        only: frozenset[str] | None = None,
    ) -> None:
        self.normaliser = prepared.normaliser()
        self.directory = directory
        self.default_venue = default_venue
        self.key = key
        self.only = only
        self.earlier = prepared.earlier
        self._first_of_key: dict[str, int] = {}
        self._first_of_content: dict[int, int] = {}
        #: The fields a payload of these rows may send (the mapped ones, a default venue), in
        #: the order they make up its content.
        self._content = tuple(sorted({*self.normaliser.fields, "venueId"}))

    def check(self, normalised: Normalised, plain: Sequence[bool] | None = None) -> Checks:
        """Each row of the batch (in order) and its payload or outcome. With ``plain`` (see
        :func:`~importer.validate.plain_rows`), a plain row is not made: its row and its
        verdict are None (its payload is as normalised, valid, with the batch's notes as its
        warnings; :attr:`Checks.identical` has its warning when it repeats an earlier row)."""
        count = len(normalised.source.numbers)
        checks = Checks([None] * count, [None] * count, {})
        rows, checked = checks.rows, checks.checked
        kept: list[bool] = [False] * count  # a results sheet's rows kept as they were
        earlier, only = self.earlier, self.only
        items: Iterator[tuple[int, tuple[Row, Payload | Outcome]]] = (
            enumerate(normalised.items())
            if plain is None
            else ((i, normalised.item(i)) for i in compress(range(count), map(not_, plain)))
        )
        for i, (row, item) in items:
            rows[i] = row
            if earlier is not None:
                before = str(row.cells.get(earlier["result"]) or "").strip()
                # A key gone from an earlier export is no row to send: kept as it was.
                if before in VANISHED or (only is not None and before not in only):
                    checked[i], kept[i] = _kept(row, earlier, before), True
                    continue
            checked[i] = (
                validate(item, self.directory, default_venue=self.default_venue)
                if isinstance(item, Payload)
                else item
            )
        taking = list(map(not_, kept))
        if self.key is not None:
            self._keys(normalised, checks, taking)
        else:
            self._identical(normalised, checks, taking)
        return checks

    def _keys(self, normalised: Normalised, checks: Checks, taking: list[bool]) -> None:
        """A key given on an earlier row (of this batch or one before) makes a row invalid."""
        key = self.key
        assert key is not None
        rows, checked = checks.rows, checks.checked
        headers = normalised.headers
        column = normalised.source.columns[headers.index(key)] if key in headers else ()
        values = list(map(key_text, column)) if column else [""] * len(taking)
        numbers = normalised.source.numbers
        first_of_key = self._first_of_key
        taken = list(compress(numbers, taking))
        firsts = list(map(first_of_key.setdefault, compress(values, taking), taken))
        first_of_key.pop("", None)  # a row without a key repeats nothing
        if firsts == taken:
            return  # the common case: no key given twice
        for i, first in zip(compress(range(len(taking)), taking), firsts, strict=True):
            if values[i] and first != numbers[i]:
                before = checked[i]
                warnings = before.warnings if before is not None else normalised.notes.get(i, ())
                if rows[i] is None:
                    rows[i] = normalised.item(i)[0]
                checked[i] = Outcome(
                    "invalid",
                    error_code=DUPLICATE_KEY,
                    field=key,
                    message=f"{key} {values[i]!r} is already on row {first}",
                    warnings=warnings,
                )

    def _identical(self, normalised: Normalised, checks: Checks, taking: list[bool]) -> None:
        """A row sending what an earlier row sends is warned of (only plain rows and payloads:
        a row that cannot be sent repeats nothing)."""
        checked = checks.checked
        made = list(compress(count_from(), map(is_not, checked, repeat(None))))
        valid = list(taking)
        for i in made:
            if checked[i].__class__ is Outcome:
                valid[i] = False
        if not any(valid):
            return
        count = len(valid)
        columns = {name: values for name, _, values in normalised.plan}
        blank = [None] * count
        fields = self._content
        together = zip(
            *(_given(columns[name]) if name in columns else blank for name in fields), strict=True
        )
        keys = list(map(hash, together))
        for i in made:
            item = checked[i]
            if isinstance(item, Payload):  # validate may have made its values typed
                keys[i] = content_of(item.params, fields)
        numbers = normalised.source.numbers
        first_of_content = self._first_of_content
        if len(first_of_content) + count <= _IDENTICAL_LIMIT:
            firsts = list(map(first_of_content.setdefault, compress(keys, valid),
                              compress(numbers, valid)))  # fmt: skip
            places = list(compress(range(count), valid))
        else:  # memory stays bounded: rows are remembered while there is room
            firsts, places = [], []
            for i in compress(range(count), valid):
                if len(first_of_content) >= _IDENTICAL_LIMIT:
                    break
                firsts.append(first_of_content.setdefault(keys[i], numbers[i]))
                places.append(i)
        for i, first in zip(places, firsts, strict=True):
            if first != numbers[i]:
                item = checked[i]
                if item is None:
                    checks.identical[i] = f"{IDENTICAL}{first}"
                else:
                    assert isinstance(item, Payload)
                    checked[i] = item._replace(warnings=(*item.warnings, f"{IDENTICAL}{first}"))


def content_of(params: Mapping[str, Any], fields: tuple[str, ...]) -> int:
    """What a payload sends, as a number (equal for payloads that send the same): its values
    of ``fields``, in that order (else, with a field beyond them, all its items)."""
    if params.keys() <= set(fields):
        return hash(tuple(map(params.get, fields)))
    return hash(tuple(sorted(params.items())))


def _given(values: Sequence[Any]) -> Sequence[Any]:
    """A column's values as a payload gives them: "" left out (None)."""
    return [None if v == "" else v for v in values] if "" in values else values


def key_text(value: Any) -> str:
    """A legacy id (``--key``) cell as text: ``1234`` for a workbook's 1234.0."""
    return "" if is_blank(value) else str(whole(value)).strip()


RESULTS: frozenset[str] = frozenset(get_args(Result))


def key_of(row: Row, key: str) -> str:
    """A row's legacy id (``--key``) as text: ``1234`` for a workbook's 1234.0."""
    return key_text(row.cells.get(key))


def _kept(row: Row, earlier: dict[str, str], result: str) -> Outcome:
    """A row of a results sheet that ``--only`` did not pick: its earlier outcome, as it was."""

    def cell(name: str) -> Any:
        value = whole(row.cells.get(earlier[name]))
        if isinstance(value, str):
            value = value.strip()
            value = int(value) if value.isdigit() else value
        return None if is_blank(value) else value

    task_id = cell("task_id")
    warnings = [w for w in str(cell("warnings") or "").split("; ") if w]
    return Outcome(
        result if result in RESULTS else "skipped",  # type: ignore[arg-type]
        task_id=task_id if isinstance(task_id, int) else None,
        error_code=cell("error_code"),
        field=cell("field"),
        message=str(cell("message") or ""),
        warnings=(*warnings, "kept from the earlier results: not picked by --only"),
    )
