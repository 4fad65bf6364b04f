"""The one locked sequence the transcript, events, frames and instructions share."""

from __future__ import annotations

import threading

from screenshare_widget.events import Events, _Log
from screenshare_widget.instructions import Instructions
from screenshare_widget.locked import LockedSequence
from screenshare_widget.transcript import Transcript


def test_the_session_data_types_share_one_locked_sequence() -> None:
    for kind in (Events, Instructions, Transcript):
        assert issubclass(kind, LockedSequence), kind


def test_a_bounded_log_indexes_slices_and_drops_the_oldest() -> None:
    log: _Log[int] = _Log(limit=3)
    for n in range(5):
        log.append(n)
    assert list(log) == [2, 3, 4]
    assert (log[0], log[-1], len(log)) == (2, 4, 3)
    assert log[1:] == [3, 4]  # a deque takes no slice: the view slices a snapshot


def test_a_reader_on_another_thread_sees_whole_snapshots() -> None:
    log: _Log[int] = _Log(limit=2_000)
    done = threading.Event()
    seen: list[list[int]] = []

    def read() -> None:
        while not done.is_set():
            seen.append(log.snapshot())

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(2_000):
        log.append(n)
    done.set()
    reader.join()
    assert seen, "the reader never ran"
    for snapshot in seen:  # every snapshot is a prefix: no item missing in the middle
        assert snapshot == list(range(len(snapshot)))
