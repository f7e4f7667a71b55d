"""The rows of a source kept from a full pass, for later passes over a few of them.

A re-check after a person corrects a cell needs that row alone, but reading the file again to
find it costs as much as the first check (seconds for 400,000 rows). A :class:`RowCache` given
to the reader (``SourceOptions(row_cache=...)``) keeps the rows as a full pass read them, before
any cell filter or correction, pickled and compressed by batch in memory (a few bytes a cell);
a pass over given row numbers then unpacks only the batches that hold them.

The cache holds one source at a time, named by its path, size and modification time and by how
it was read (sheet, encoding, delimiter, header): a cache of another file, or of this file
since changed, is never used. It also keeps what :func:`~importer.prepare.prepare` found in
that full pass, for a re-check to reuse while the cells it depends on are the same.
"""

from __future__ import annotations

import pickle
import threading
import zlib
from bisect import bisect_right
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._table import Batch

if TYPE_CHECKING:
    from . import Source


#: Rows packed together: a re-check of one row unpacks its piece alone (about a millisecond).
_PIECE = 512
_PROTOCOL = pickle.HIGHEST_PROTOCOL


class RowCache:
    """The rows of one source as its last full pass read them (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._firsts: list[int] = []
        self._blobs: list[bytes] = []
        #: What a full pass found, for :func:`~importer.prepare.prepare`: its own to read and
        #: write, valid while :meth:`holds` the source it was found in.
        self.facts: Any = None

    @staticmethod
    def key_of(source: Source) -> tuple[Any, ...]:
        path = Path(source.path)
        stat = path.stat()
        return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, source.kind, source.sheet,
                source.encoding, source.delimiter, source.layout)  # fmt: skip

    def holds(self, source: Source) -> bool:
        """Whether the cache holds every row of ``source`` as it is now."""
        try:
            return self._key is not None and self._key == self.key_of(source)
        except OSError:
            return False

    def recording(self, source: Source) -> Recording:
        """A recorder of one full pass over ``source``: kept only once :meth:`Recording.done`."""
        return Recording(self, self.key_of(source), len(source.layout.headers))

    def batches_of(self, numbers: Collection[int]) -> Iterator[Batch]:
        """The rows of ``numbers`` the cache holds, in source order, in batches (as read:
        before filters and corrections)."""
        with self._lock:
            firsts, blobs = self._firsts, self._blobs
        wanted: dict[int, list[int]] = {}
        for number in numbers:
            at = bisect_right(firsts, number) - 1
            if at >= 0:
                wanted.setdefault(at, []).append(number)
        for at in sorted(wanted):
            row_numbers, columns = pickle.loads(zlib.decompress(blobs[at]))
            keep = set(wanted[at])
            picked = [i for i, n in enumerate(row_numbers) if n in keep]
            if picked:
                rows = [tuple(column[i] for column in columns) for i in picked]
                yield Batch([row_numbers[i] for i in picked], rows)

    def _keep(self, key: tuple[Any, ...], firsts: list[int], blobs: list[bytes]) -> None:
        with self._lock:
            self._key, self._firsts, self._blobs = key, firsts, blobs
            self.facts = None


class Recording:
    """The batches of one full pass, packed as they go by; the cache's once the pass ends."""

    def __init__(self, cache: RowCache, key: tuple[Any, ...], width: int) -> None:
        self._cache, self._key, self._width = cache, key, width
        self._firsts: list[int] = []
        self._blobs: list[bytes] = []

    def passing(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """``batches``, each packed on its way."""
        for batch in batches:
            columns = [batch.column(i) for i in range(self._width)]
            numbers = batch.numbers
            for start in range(0, len(numbers), _PIECE):
                end = start + _PIECE
                piece = (list(numbers[start:end]), [list(c[start:end]) for c in columns])
                self._firsts.append(numbers[start])
                self._blobs.append(zlib.compress(pickle.dumps(piece, _PROTOCOL), 1))
            yield batch

    def done(self) -> None:
        """The pass read every row: the cache now holds them (and no facts yet)."""
        self._cache._keep(self._key, self._firsts, self._blobs)
