"""Utterance detection from the energy of 16 kHz PCM16 audio.

Internal module. :class:`UtteranceDetector` is synchronous and pure: feed it PCM, get
events back. Each 20 ms frame's RMS level (dBFS) is compared with a threshold that is the
higher of a fixed level (``threshold_dbfs``) and an adaptive noise floor (the quietest frame
of the last ``floor_window_s`` seconds) plus ``floor_margin_db``. The browser applies echo
cancellation and noise suppression, so speech can be quiet (peaks near 0.05 FS) and a
fixed threshold near -50 dBFS with the adaptive floor works better than a high fixed one.

Speech starts after ``start_ms`` of consecutive loud frames and ends after ``end_ms`` of
consecutive quiet ones. Utterances shorter than ``min_utterance_ms`` are ignored, and so are
those whose loudest frame is not above the noise floor measured at their end (a stationary
noise that started with the stream and was first taken for speech).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import numpy.typing as npt

from ..protocol import INPUT_RATE_HZ

#: Analysis frame (milliseconds).
FRAME_MS: Final = 20
#: Level of digital silence (dBFS); quieter frames are clamped to it.
SILENCE_DBFS: Final = -100.0
#: Noise floor assumed for the first :data:`INITIAL_FLOOR_S` of the stream (dBFS), so that
#: speech at the very start is heard before the floor has been measured.
INITIAL_FLOOR_DBFS: Final = -70.0
INITIAL_FLOOR_S: Final = 0.5

DEFAULT_THRESHOLD_DBFS: Final = -50.0
DEFAULT_FLOOR_MARGIN_DB: Final = 10.0
DEFAULT_START_MS: Final = 150
DEFAULT_END_MS: Final = 600
DEFAULT_MIN_UTTERANCE_MS: Final = 250
DEFAULT_FLOOR_WINDOW_S: Final = 5.0


@dataclass(frozen=True)
class VadConfig:
    """The detector's parameters, in one place for the detector and the responder.

    ``threshold_dbfs``: a frame louder than this (dBFS) may be speech; ``floor_margin_db``:
    and it must stand this far above the noise floor (dB), measured as the quietest frame of
    the last ``floor_window_s`` seconds; ``start_ms`` of loud frames start speech,
    ``end_ms`` of quiet ones end it (``None``: the connection's :class:`Realism` decides, see
    :meth:`resolved`); utterances shorter than ``min_utterance_ms`` are ignored.
    """

    threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS
    floor_margin_db: float = DEFAULT_FLOOR_MARGIN_DB
    start_ms: int = DEFAULT_START_MS
    end_ms: int | None = None
    min_utterance_ms: int = DEFAULT_MIN_UTTERANCE_MS
    floor_window_s: float = DEFAULT_FLOOR_WINDOW_S

    def __post_init__(self) -> None:
        if self.end_ms is not None and self.end_ms <= 0:
            raise ValueError("end_ms must be positive")

    def resolved(self, end_ms: int) -> VadConfig:
        """This config, with ``end_ms`` filled in where it was left to the connection."""
        return self if self.end_ms is not None else replace(self, end_ms=end_ms)


@dataclass(frozen=True)
class SpeechStarted:
    """Speech began ``start_s`` seconds into the stream (its first loud frame)."""

    start_s: float


@dataclass(frozen=True)
class UtteranceEnded:
    """An utterance from ``start_s`` to ``end_s`` (seconds into the stream) ended."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        """Length of the utterance (seconds), first to last loud frame."""
        return self.end_s - self.start_s


VadEvent = SpeechStarted | UtteranceEnded


def level_dbfs(frame: npt.NDArray[np.int16]) -> float:
    """RMS level of PCM16 samples in dBFS (full-scale sine = -3 dBFS), at least -100."""
    if frame.size == 0:
        return SILENCE_DBFS
    rms = math.sqrt(float(np.mean(np.square(frame.astype(np.float64) / 32768.0))))
    return max(SILENCE_DBFS, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


def levels_dbfs(frames: npt.NDArray[np.int16]) -> list[float]:
    """:func:`level_dbfs` of each row of a 2-D array of frames, computed at once."""
    if frames.size == 0:
        return [SILENCE_DBFS] * len(frames)
    power = np.mean(np.square(frames.astype(np.float64) / 32768.0), axis=1)
    floor_power = 10.0 ** (SILENCE_DBFS / 10.0)
    levels = 10.0 * np.log10(np.maximum(power, floor_power))
    return [float(level) for level in levels]


class UtteranceDetector:
    """Energy-based end-of-utterance detection on a stream of 16 kHz PCM16 mono."""

    def __init__(self, config: VadConfig | None = None, *, rate: int = INPUT_RATE_HZ) -> None:
        config = config if config is not None else VadConfig(end_ms=DEFAULT_END_MS)
        end_ms = config.end_ms if config.end_ms is not None else DEFAULT_END_MS
        self.threshold_dbfs = config.threshold_dbfs
        self.floor_margin_db = config.floor_margin_db
        self.rate = rate
        start_ms, min_utterance_ms, floor_window_s = (
            config.start_ms,
            config.min_utterance_ms,
            config.floor_window_s,
        )
        self._frame_samples = rate * FRAME_MS // 1000
        self._start_frames = max(1, math.ceil(start_ms / FRAME_MS))
        self._end_frames = max(1, math.ceil(end_ms / FRAME_MS))
        self._min_s = min_utterance_ms / 1000
        self._window = max(1, round(floor_window_s * 1000 / FRAME_MS))
        # The window's ascending minima as (frame index, level): the floor is the first.
        self._minima: deque[tuple[int, float]] = deque()
        self._initial_frames = round(INITIAL_FLOOR_S * 1000 / FRAME_MS)
        self._peak = SILENCE_DBFS  # loudest frame of the current utterance
        self._pending = b""
        self._frames = 0  # frames analysed so far
        self._loud_run = 0  # consecutive loud frames
        self._quiet_run = 0  # consecutive quiet frames while in speech
        self._in_speech = False
        self._start_frame = 0
        self._last_loud_frame = 0

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is in progress."""
        return self._in_speech

    @property
    def floor(self) -> float:
        """The current noise floor estimate (dBFS)."""
        floor = self._minima[0][1] if self._minima else INITIAL_FLOOR_DBFS
        if self._frames < self._initial_frames:
            floor = min(floor, INITIAL_FLOOR_DBFS)
        return floor

    @property
    def threshold(self) -> float:
        """The current speech threshold (dBFS)."""
        return max(self.threshold_dbfs, self.floor + self.floor_margin_db)

    def feed(self, pcm16: bytes) -> list[VadEvent]:
        """Analyse more audio; returns the events it completes, in order."""
        data = self._pending + pcm16
        step = self._frame_samples * 2
        whole = len(data) // step * step
        self._pending = data[whole:]
        events: list[VadEvent] = []
        if whole == 0:
            return events
        # Levels are computed for all frames at once: the loop below is pure Python floats.
        samples = np.frombuffer(data[:whole], dtype="<i2").reshape(-1, self._frame_samples)
        for level in levels_dbfs(samples):
            event = self._frame(level)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[VadEvent]:
        """End the current utterance now (the stream paused or ended)."""
        self._pending = b""
        if not self._in_speech:
            self._loud_run = 0
            return []
        event = self._finish()
        return [event] if event is not None else []

    def _frame(self, level: float) -> VadEvent | None:
        loud = level > self.threshold
        index = self._frames
        self._frames += 1
        minima = self._minima
        while minima and minima[-1][1] >= level:
            minima.pop()
        minima.append((index, level))
        if minima[0][0] <= index - self._window:
            minima.popleft()
        if not self._in_speech:
            self._loud_run = self._loud_run + 1 if loud else 0
            if loud:
                self._peak = level if self._loud_run == 1 else max(self._peak, level)
            if self._loud_run >= self._start_frames:
                self._in_speech = True
                self._quiet_run = 0
                self._start_frame = index - self._loud_run + 1
                self._last_loud_frame = index
                return SpeechStarted(self._start_frame * FRAME_MS / 1000)
            return None
        if loud:
            self._quiet_run = 0
            self._last_loud_frame = index
            self._peak = max(self._peak, level)
            return None
        self._quiet_run += 1
        if self._quiet_run >= self._end_frames:
            return self._finish()
        return None

    def _finish(self) -> UtteranceEnded | None:
        self._in_speech = False
        self._loud_run = 0
        self._quiet_run = 0
        start = self._start_frame * FRAME_MS / 1000
        end = (self._last_loud_frame + 1) * FRAME_MS / 1000
        if end - start < self._min_s or self._peak <= self.floor + self.floor_margin_db:
            return None
        return UtteranceEnded(start, end)
