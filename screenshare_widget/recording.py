"""Sessions saved as folders, to listen to, inspect and replay (``assistant.record(path)``).

A recording folder holds:

``mic.wav``
    The microphone as it reached the kernel: PCM16 mono at 16 kHz, on the recording's
    timeline (a pause in the audio, such as sharing stopped, is kept as silence).
``model.wav``
    The model's speech as it arrived: PCM16 mono at 24 kHz, answers one after another.
``frames/000001.jpg``, ...
    Every screen frame the model was sent.
``events.jsonl``
    One JSON object per line. The first line describes the recording (``kind:
    "recording"``, the model, voice and system instruction); every other line is a session
    event (``kind`` as in ``assistant.events``) with ``t``, its time in seconds since the
    recording started. ``frame_sent`` lines name their JPEG file; ``text`` lines carry what
    the user typed.
``transcript.jsonl``
    The turns spoken while recording, written when the recording stops.

Files are flushed about every second while recording, so a crash loses at most that much.
They are written on the recorder's own thread, never on the relay's loop: the relay's
calls only queue what to write (at most :data:`WRITE_QUEUE_ITEMS`; past that, the newest
is dropped and counted, with one warning). That thread owns the files: it alone writes and
closes them. ``stop()`` waits for what is queued; if the disk did not keep up for
:data:`STOP_TIMEOUT_S`, the rest is dropped (counted, one warning) and the thread finishes the
files as soon as the write in progress returns, then ends. This module imports no widget or
SDK code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

from .events import Event, SentFrame
from .protocol import INPUT_RATE_HZ, OUTPUT_RATE_HZ, SAMPLE_BYTES
from .transcript import Turn
from .wav import WavWriter

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: The folder layout's version, in the first line of ``events.jsonl``.
FORMAT: Final = 1
#: A gap this long (s) between microphone chunks is written as silence, so the audio keeps
#: the recording's timeline; shorter jitter is not.
GAP_FILL_S: Final = 0.5
#: Flush files (and WAV headers) this often while recording (s).
FLUSH_EVERY_S: Final = 1.0
#: Writes waiting for the recorder's thread (one per event, mic chunk, frame or model
#: chunk): about a minute of a busy session. Policy: drop the newest, counted in
#: :attr:`Recorder.dropped`, when the disk cannot keep up.
WRITE_QUEUE_ITEMS: Final = 4096
#: How long :meth:`Recorder.stop` waits for the writes still queued (s); past that, they
#: are dropped.
STOP_TIMEOUT_S: Final = 10.0
#: How long :meth:`Recorder.stop` then waits for the writer to finish the files (s).
FINISH_TIMEOUT_S: Final = 1.0
_HEADER_BYTES: Final = 44


class Recorder:
    """Writes one session into a folder while it runs; see the module docs for the layout.

    Made by ``assistant.record(path)``; the relay calls its ``on_*`` methods on its thread.
    Files are flushed every ``flush_every_s`` seconds (:data:`FLUSH_EVERY_S`); gaps in the
    microphone audio are measured on ``monotonic`` (seconds; ``time.monotonic``).
    :meth:`stop` (or leaving a ``with`` block) finishes the files and returns the
    :class:`Recording`. Stopping twice is harmless.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        meta: dict[str, Any],
        turns: Callable[[], Sequence[Turn]] = tuple,
        on_stop: Callable[[], None] | None = None,
        flush_every_s: float = FLUSH_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        folder = Path(path)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise FileExistsError(
                f"{folder} already exists and is not an empty folder; record into a new one"
            )
        (folder / "frames").mkdir(parents=True, exist_ok=True)
        self.path = folder
        self.started_at = datetime.now(UTC)
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._turns = turns
        self._on_stop = on_stop
        self._first_turn = len(turns())
        self._stop_lock = threading.Lock()
        self._closed = False  # the tap queues nothing more
        self._abandoned = threading.Event()  # stop() gave up waiting: the writer ends
        self._mic = WavWriter(folder / "mic.wav", INPUT_RATE_HZ)
        self._model = WavWriter(folder / "model.wav", OUTPUT_RATE_HZ)
        self._events = (folder / "events.jsonl").open("w", encoding="utf-8")
        self._frames = 0
        self._flush_every_s = flush_every_s
        self._flushed = self._t0
        header = {"kind": "recording", "format": FORMAT, "started_at": _iso(self.started_at)}
        self._line({**header, **meta})
        for file in (self._mic, self._model, self._events):
            file.flush()  # a recording whose writer never gets to write still loads
        self._recording: Recording | None = None
        #: Writes dropped because the queue was full (the disk could not keep up).
        self.dropped = 0
        self._writes: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.Queue(
            WRITE_QUEUE_ITEMS
        )
        self._writer = threading.Thread(
            target=self._write_all, name=f"recorder {folder.name}", daemon=True
        )
        self._writer.start()

    def __repr__(self) -> str:
        state = "stopped" if self._closed else "recording"
        return f"Recorder({str(self.path)!r}, {state}, {self._mic.seconds:.1f} s of audio)"

    # ---- the relay's tap (relay thread: queue only) -------------------------------------------

    def on_event(self, event: Event) -> None:
        """Append a session event (``frame_sent`` comes through :meth:`on_frame`)."""
        if event.kind != "frame_sent":
            self._queue(self._write_event, event)

    def on_mic(self, pcm: bytes) -> None:
        """Append microphone audio, after silence for any gap since the last chunk."""
        self._queue(self._write_mic, pcm, self._monotonic())

    def on_frame(self, frame: SentFrame) -> None:
        """Save a frame the model was sent, and its ``frame_sent`` line."""
        self._queue(self._write_frame, frame)

    def on_model_audio(self, pcm: bytes) -> None:
        """Append model speech."""
        self._queue(self._model.write, pcm)

    def _queue(self, write: Callable[..., None], *args: Any) -> None:
        if self._closed:
            return
        try:
            self._writes.put_nowait((write, args))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("the recorder cannot keep up with the session; dropping writes")

    # ---- the writer (the recorder's thread) ----------------------------------------------------

    def _write_all(self) -> None:
        """Write what is queued until the end mark (or until :meth:`stop` gives up), then
        finish the files: they are this thread's alone."""
        while not self._abandoned.is_set():
            item = self._writes.get()
            if item is None:
                break
            write, args = item
            try:
                write(*args)
                self._maybe_flush()
            except Exception:
                logger.exception("the recorder failed to write to %s", self.path)
        try:
            self._finish()
        except Exception:
            logger.exception("the recorder failed to finish %s", self.path)

    def _write_event(self, event: Event) -> None:
        self._line({"t": self._t(event.at), "kind": event.kind, **event.detail})

    def _write_mic(self, pcm: bytes, arrived: float) -> None:
        start_s = arrived - self._t0 - len(pcm) / (INPUT_RATE_HZ * SAMPLE_BYTES)
        gap_s = start_s - self._mic.seconds
        if gap_s > GAP_FILL_S:
            self._mic.write(bytes(round(gap_s * INPUT_RATE_HZ) * SAMPLE_BYTES))
        self._mic.write(pcm)

    def _write_frame(self, frame: SentFrame) -> None:
        self._frames += 1
        name = f"frames/{self._frames:06d}.jpg"
        (self.path / name).write_bytes(frame.jpeg)
        self._line(
            {
                "t": self._t(frame.at),
                "kind": "frame_sent",
                "file": name,
                "width": frame.width,
                "height": frame.height,
                "bytes": len(frame.jpeg),
                "reason": frame.reason,
            }
        )

    # ---- finishing ---------------------------------------------------------------------------

    def stop(self) -> Recording:
        """Write what is queued, finish the files (WAV headers, ``transcript.jsonl``) and
        return the recording.

        Blocks at most :data:`STOP_TIMEOUT_S` plus :data:`FINISH_TIMEOUT_S`. Writes still
        queued after :data:`STOP_TIMEOUT_S` are dropped (added to :attr:`dropped`, with a
        warning); a write the disk holds longer than that is the only thing that outlives
        this call: the writer finishes the files when it returns, then ends.
        """
        with self._stop_lock:
            if not self._closed:
                self._closed = True
                self._end_writer()
                if self._on_stop is not None:
                    self._on_stop()
        if self._recording is None:
            self._recording = Recording.load(self.path)
        return self._recording

    def _end_writer(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        try:
            self._writes.put(None, timeout=STOP_TIMEOUT_S)
        except queue.Full:
            pass
        self._writer.join(max(0.0, deadline - time.monotonic()))
        if not self._writer.is_alive():
            return
        self._abandoned.set()
        dropped = 0
        with contextlib.suppress(queue.Empty):
            while True:
                if self._writes.get_nowait() is not None:
                    dropped += 1
        self.dropped += dropped
        with contextlib.suppress(queue.Full):
            self._writes.put_nowait(None)  # a writer waiting for work wakes, and ends
        logger.warning(
            "the recorder's disk did not keep up: %d writes still queued after %.0f s were "
            "dropped from %s",
            dropped, STOP_TIMEOUT_S, self.path,
        )  # fmt: skip
        self._writer.join(FINISH_TIMEOUT_S)
        if self._writer.is_alive():
            logger.warning("a write to %s is still blocked; it finishes the files", self.path)

    def _finish(self) -> None:
        """Close the files and write ``transcript.jsonl`` (the writer's thread, at its end)."""
        self._mic.close()
        self._model.close()
        self._events.close()
        turns = list(self._turns())[self._first_turn :]
        with (self.path / "transcript.jsonl").open("w", encoding="utf-8") as out:
            for turn in turns:
                out.write(json.dumps(turn.to_record(), ensure_ascii=False) + "\n")

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` ran."""
        return self._closed

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- internals (the writer's thread) -----------------------------------------------------

    def _t(self, at: datetime) -> float:
        # Speech is dated when it was captured, which can be just before the recording began.
        return max(0.0, round((at - self.started_at).total_seconds(), 4))

    def _line(self, record: dict[str, Any]) -> None:
        self._events.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def _maybe_flush(self) -> None:
        now = self._monotonic()
        if now - self._flushed >= self._flush_every_s:
            self._flushed = now
            self._mic.flush()
            self._model.flush()
            self._events.flush()


@dataclass(frozen=True)
class RecordedFrame:
    """A screen frame of a recording, sent ``t`` seconds after the recording started."""

    t: float
    jpeg: bytes = field(repr=False)
    width: int
    height: int


@dataclass(frozen=True)
class RecordedText:
    """Text the user typed, ``t`` seconds after the recording started."""

    t: float
    text: str


class _Tapped(Protocol):
    """What a :class:`RecorderSlot` taps: the relay, whose ``tap`` sees the session."""

    @property
    def tap(self) -> Any: ...
    @tap.setter
    def tap(self, tap: Any) -> None: ...


class RecorderSlot:
    """The one :class:`Recorder` an assistant runs at a time, tapped into its relay.

    ``shown`` is told the folder being recorded to, and ``""`` when the recording stops
    (the widget's ``recording`` trait); it may be called from the thread that stops it.
    """

    def __init__(self, relay: _Tapped, shown: Callable[[str], None]) -> None:
        self._relay = relay
        self._shown = shown
        self._lock = threading.Lock()
        #: The latest recorder (stopped or not); None before the first.
        self.recorder: Recorder | None = None

    def start(
        self,
        path: str | os.PathLike[str],
        meta: dict[str, Any],
        turns: Callable[[], Sequence[Turn]],
    ) -> Recorder:
        """Start recording into ``path``; ``RuntimeError`` while another recording runs."""
        with self._lock:
            if self.recorder is not None and not self.recorder.stopped:
                raise RuntimeError(
                    f"already recording to {self.recorder.path}; "
                    "call assistant.stop_recording() first"
                )
            recorder = Recorder(path, meta=meta, turns=turns, on_stop=self._stopped)
            self.recorder = recorder
            self._relay.tap = recorder
        self._shown(str(recorder.path))
        return recorder

    def stop(self) -> Recording | None:
        """Finish the running recording and return it (None if there is none)."""
        recorder = self.recorder
        return None if recorder is None else recorder.stop()

    def _stopped(self) -> None:
        if self._relay.tap is self.recorder:
            self._relay.tap = None
        self._shown("")


@dataclass(frozen=True)
class Recording:
    """A recorded session, loaded from its folder (see the module docs for the layout).

    ``mic`` is PCM16 LE mono at 16 kHz from the recording's start; ``events`` are the
    lines of ``events.jsonl`` after the first, as dicts with ``t`` in seconds.
    """

    path: Path
    started_at: datetime
    model: str
    voice: str
    system_instruction: str
    mic: bytes = field(repr=False)
    frames: tuple[RecordedFrame, ...] = field(repr=False)
    texts: tuple[RecordedText, ...] = field(repr=False)
    events: tuple[dict[str, Any], ...] = field(repr=False)
    turns: tuple[Turn, ...] = field(repr=False)

    @property
    def duration_s(self) -> float:
        """How long the recording runs: its audio, or its last event if later (s)."""
        last = max((e.get("t", 0.0) for e in self.events), default=0.0)
        return max(len(self.mic) / (INPUT_RATE_HZ * SAMPLE_BYTES), float(last))

    def __repr__(self) -> str:
        return (
            f"Recording({str(self.path)!r}, {self.duration_s:.1f} s, {len(self.frames)} frames, "
            f"{len(self.texts)} texts, {len(self.turns)} turns)"
        )

    def to_pandas(self) -> pd.DataFrame:
        """The events as a table: t (s), kind, and one column per detail."""
        import pandas as pd

        frame = pd.DataFrame(list(self.events))
        return frame if not frame.empty else pd.DataFrame(columns=["t", "kind"])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recording:
        """Read a recording folder; raises ``ValueError`` naming what is missing or broken."""
        folder = Path(path)
        events_path = folder / "events.jsonl"
        if not events_path.is_file():
            raise ValueError(f"{folder} is not a recording: it has no events.jsonl")
        lines = _read_events(events_path)
        if not lines or lines[0].get("kind") != "recording":
            raise ValueError(f"{events_path} does not start with a recording header")
        head, events = lines[0], tuple(lines[1:])
        if head.get("format", FORMAT) > FORMAT:
            raise ValueError(f"{folder} was written by a newer screenshare-widget")
        frames = _read_frames(folder, events)
        texts = tuple(
            RecordedText(float(e["t"]), str(e["text"]))
            for e in events
            if e.get("kind") == "text" and isinstance(e.get("text"), str)
        )
        return cls(
            path=folder,
            started_at=datetime.fromisoformat(head["started_at"]),
            model=str(head.get("model", "")),
            voice=str(head.get("voice", "")),
            system_instruction=str(head.get("system_instruction", "")),
            mic=_read_wav(folder / "mic.wav", INPUT_RATE_HZ),
            frames=tuple(frames),
            texts=texts,
            events=events,
            turns=_read_turns(folder / "transcript.jsonl"),
        )


def _read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of ``events.jsonl``; a broken line after the first is skipped."""
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == 1:
                raise ValueError(f"{path}: the first line is not JSON") from exc
            logger.warning("%s line %d is not JSON; skipped", path, number)
            continue
        if isinstance(record, dict):
            lines.append(record)
    return lines


def _read_frames(folder: Path, events: Sequence[dict[str, Any]]) -> list[RecordedFrame]:
    """The frames the ``frame_sent`` events name; a missing file is skipped."""
    frames = []
    for e in events:
        if e.get("kind") == "frame_sent" and isinstance(e.get("file"), str):
            file = folder / e["file"]
            if file.is_file():
                width, height = int(e.get("width", 0)), int(e.get("height", 0))
                frames.append(RecordedFrame(float(e["t"]), file.read_bytes(), width, height))
            else:
                logger.warning("%s: %s is missing; that frame is skipped", folder, e["file"])
    return frames


def _iso(at: datetime) -> str:
    return at.isoformat()


def _read_wav(path: Path, rate_hz: int) -> bytes:
    """The PCM of a mono PCM16 WAV at ``rate_hz`` (b"" if the file is absent)."""
    if not path.is_file():
        return b""
    data = path.read_bytes()
    if len(data) < _HEADER_BYTES or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a WAV file")
    channels, rate, bits = struct.unpack("<H I 6x H", data[22:36])
    if (channels, rate, bits) != (1, rate_hz, 16):
        raise ValueError(
            f"{path} is {channels} channel(s) at {rate} Hz, {bits}-bit; "
            f"expected mono 16-bit at {rate_hz} Hz"
        )
    pcm = data[_HEADER_BYTES:]
    return pcm[: len(pcm) // SAMPLE_BYTES * SAMPLE_BYTES]


def _read_turns(path: Path) -> tuple[Turn, ...]:
    if not path.is_file():
        return ()
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        turns.append(
            Turn(
                role="user" if r.get("role") == "user" else "model",
                text=str(r.get("text", "")),
                started_at=datetime.fromtimestamp(float(r["started_at"]), UTC),
                ended_at=None
                if r.get("ended_at") is None
                else datetime.fromtimestamp(float(r["ended_at"]), UTC),
                interrupted=bool(r.get("interrupted", False)),
                instruction=int(r.get("instruction", 1)),
                typed=bool(r.get("typed", False)),
            )
        )
    return tuple(turns)
