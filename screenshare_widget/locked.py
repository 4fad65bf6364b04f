"""A read-only sequence that other threads may grow: the shape the session's data shares.

Internal module. The transcript, the events, the frames and the instruction history are all
written by the relay's thread (or a user's cell) while any thread reads them. Each is a
:class:`LockedSequence`: reads see one consistent snapshot, taken under the lock; the subclass
writes under the same lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, MutableSequence, Sequence
from typing import TypeVar, overload

T = TypeVar("T")


class LockedSequence(Sequence[T]):
    """A thread-safe read-only view of ``items``; subclasses mutate them under ``_lock``."""

    def __init__(self, items: MutableSequence[T]) -> None:
        self._lock = threading.Lock()
        self._items = items

    def snapshot(self) -> list[T]:
        """A copy of the items as they are now."""
        with self._lock:
            return list(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...
    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        if isinstance(index, slice):
            return self.snapshot()[index]  # a deque takes no slices; a copy is a snapshot
        with self._lock:
            return self._items[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.snapshot())
