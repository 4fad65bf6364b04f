"""The emulator's own voice heard back: speaker echo, transcribed as the real service does.

Internal module. Without headphones the model's voice leaks from the speakers into the
microphone. The real service hears it like any speech: its VAD takes it for a barge-in (the
model interrupts itself), and its input transcription is the words the model had just said.
The emulator does the same. :class:`OwnVoice` keeps what a connection sent as voice in the
last :data:`MEMORY_S` (each reply's 24 kHz PCM, its text, when its first chunk went out and
how much of it played: what went, up to an interruption, when the client flushes what it has
not played yet); :class:`Hearing` keeps the 16 kHz audio received over the same time,
with arrival times; :func:`echo_of` says whether an utterance is mostly that voice and, if
so, which of its words it repeats.

How: the voice is laid out as the client plays it (a reply's sample ``k`` at its first
chunk's send time plus ``k / 24000`` s) and resampled to 16 kHz. The utterance, dated by
when its audio arrived, is cut into blocks of :data:`BLOCK_S`; each block's normalized
cross-correlation with the voice at every delay from :data:`MIN_DELAY_S` to
:data:`MAX_DELAY_S` gives its best ``|r|``, and ``r**2`` is the share of the block's energy
the voice explains, at any gain. The utterance is echo when the energy-weighted share over
its blocks reaches :data:`ECHO_SHARE`. Its words are those of the replies whose time
(apportioned by characters over the reply's voiced audio) falls where the matching blocks were
heard. Each block has its own delay, so a delay that drifts or jumps mid-utterance still
matches. (A correlation of compressed band spectrograms, tried first, kept strong
reverberation at 0.76 but scored a user speaking alone up to 0.46 and a user 6 dB over the
echo up to 0.69: too close to tell apart.)

Measured on synthetic echoes (``python -m bench.echo_detector``: espeak-ng replies through
a 24 to 48 to 16 kHz chain, 100 ms chunks arriving 2-30 ms late, the emulator's own
utterance detector): every echo detected at delays 0-480 ms and gains 0 to -30 dB with
noise 20 dB under it, in a room whose reverberation carries half the direct sound's energy
(share 0.64), with a clock 100 ppm off, and under a user 6 dB quieter (share 0.86 and
above); no unrelated speech, tone or noise (share 0.02 at most) and no user speaking 6 dB
or more over the echo (0.43 at most) taken for it. In a room whose reverberation is as
strong as the direct sound the share falls to about 0.5: such echo may keep the
placeholder. Cost: a median of 8 ms per utterance and about 20 ms at most (the
:data:`MAX_ANALYSED_S` bound), on a busy 2-core machine.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import numpy.typing as npt

from ..protocol import INPUT_RATE_HZ, OUTPUT_RATE_HZ, SAMPLE_BYTES
from .speech import resample
from .vad import DEFAULT_THRESHOLD_DBFS, FRAME_MS, levels_dbfs

#: What the emulator remembers of its own voice, and of what it heard (seconds).
MEMORY_S: Final = 15.0
#: Replies remembered at most (the newest; older ones go first).
MAX_REPLIES_KEPT: Final = 16
#: Delays from playing to hearing considered (seconds): the client's pre-roll, the speaker,
#: the room, the microphone's buffer and the network both ways.
MIN_DELAY_S: Final = 0.0
MAX_DELAY_S: Final = 0.5
#: A client stops playing a reply this long after the emulator interrupts it (seconds): the
#: ``interrupted`` message on its way, and the client's flush.
FLUSH_S: Final = 0.1
#: Analysis block (seconds); each block finds its own delay.
BLOCK_S: Final = 0.5
#: Blocks shorter than this at the end of an utterance are not analysed (seconds).
MIN_BLOCK_S: Final = 0.1
#: Share of an utterance's energy the own voice must explain for it to be echo.
ECHO_SHARE: Final = 0.5
#: Longest part of an utterance analysed (seconds, from its start): bounds the work (about
#: 20 ms on a busy 2-core machine). When that part is echo to its end, so is the rest.
MAX_ANALYSED_S: Final = 4.0
#: A reply's voice begins and ends where its 20 ms frames are louder than this (dBFS RMS).
VOICED_DBFS: Final = DEFAULT_THRESHOLD_DBFS
#: Own voice quieter than this where a block would match it explains nothing (dBFS RMS).
SILENT_DBFS: Final = -70.0

_WORD: Final = re.compile(r"\S+")
Samples = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Spoken:
    """One reply as the emulator said it: ``text``, the whole reply's 24 kHz PCM16,
    ``started`` (``time.time()`` when its first chunk went out) and ``sent_s``, the audio
    sent so far (seconds; a barge-in stops it there)."""

    text: str
    pcm: bytes = field(repr=False)
    started: float
    sent_s: float = 0.0

    @property
    def total_s(self) -> float:
        """The whole reply's length (seconds), sent or not."""
        return len(self.pcm) / (OUTPUT_RATE_HZ * SAMPLE_BYTES)

    @property
    def ended(self) -> float:
        """When the last audio sent finishes playing (``time.time()`` seconds)."""
        return self.started + self.sent_s

    def voiced(self) -> tuple[float, float]:
        """Where the voice is in the reply (seconds from its start): from the first to the
        end of the last 20 ms frame above :data:`VOICED_DBFS` (all of it if none is)."""
        frame = OUTPUT_RATE_HZ * FRAME_MS // 1000
        samples = np.frombuffer(self.pcm[: len(self.pcm) // (2 * frame) * 2 * frame], "<i2")
        loud = np.flatnonzero(np.array(levels_dbfs(samples.reshape(-1, frame))) > VOICED_DBFS)
        if loud.size == 0:
            return 0.0, self.total_s
        return loud[0] * FRAME_MS / 1000, (loud[-1] + 1) * FRAME_MS / 1000

    def words_within(self, start: float, end: float) -> list[str]:
        """The words played between ``start`` and ``end`` (``time.time()`` seconds): each
        word's time is its characters' share of the reply's voice (:meth:`voiced`), and it
        counts when its middle falls in the span and was sent."""
        length = max(1, len(self.text))
        first, last = self.voiced()
        words = []
        for word in _WORD.finditer(self.text):
            share = (word.start() + word.end()) / 2 / length
            middle = self.started + first + share * (last - first)
            if start <= middle <= end and middle <= self.ended:
                words.append(word.group())
        return words


class OwnVoice:
    """The replies a connection spoke in the last ``memory_s`` seconds, oldest first."""

    def __init__(self, memory_s: float = MEMORY_S) -> None:
        self.memory_s = memory_s
        self._replies: deque[Spoken] = deque(maxlen=MAX_REPLIES_KEPT)

    @property
    def replies(self) -> list[Spoken]:
        """The replies remembered, oldest first."""
        return list(self._replies)

    def spoke(self, text: str, pcm: bytes, started: float) -> None:
        """A reply began: its first chunk of ``pcm`` went out at ``started``."""
        self._replies.append(Spoken(text, pcm, started))
        while self._replies and self._replies[0].ended < started - self.memory_s:
            self._replies.popleft()

    def sent(self, sent_s: float) -> None:
        """The reply in progress (the newest) has sent ``sent_s`` seconds of its audio."""
        if self._replies:
            self._replies[-1] = replace(self._replies[-1], sent_s=sent_s)

    def cut(self, at: float) -> None:
        """The newest reply was interrupted at ``at`` (``time.time()``): the client stops
        playing it :data:`FLUSH_S` later, whatever it was sent (as a page flushes)."""
        if self._replies:
            reply = self._replies[-1]
            played = max(0.0, at + FLUSH_S - reply.started)
            self._replies[-1] = replace(reply, sent_s=min(reply.sent_s, played))

    def played(self, start: float, end: float, rate: int = INPUT_RATE_HZ) -> Samples:
        """The voice as it played from ``start`` to ``end`` (``time.time()`` seconds), at
        ``rate``, in full-scale units; silence where nothing played."""
        out = np.zeros(max(0, round((end - start) * rate)))
        for reply in self._replies:
            a, b = max(start, reply.started), min(end, reply.ended)
            if b <= a:
                continue
            i24 = round((a - reply.started) * OUTPUT_RATE_HZ)
            j24 = round((b - reply.started) * OUTPUT_RATE_HZ)
            part = resample(reply.pcm[2 * i24 : 2 * j24], OUTPUT_RATE_HZ, rate)
            samples = np.frombuffer(part, dtype="<i2").astype(np.float64) / 32768.0
            at = round((a - start) * rate)
            n = min(samples.size, out.size - at)
            out[at : at + n] += samples[:n]
        return out

    def words(self, start: float, end: float) -> list[str]:
        """The words played between ``start`` and ``end``, in order."""
        words: list[str] = []
        for reply in self._replies:
            words += reply.words_within(start, end)
        return words


class Hearing:
    """The last ``memory_s`` seconds of 16 kHz PCM16 a connection received, as its
    utterance detector was fed, each chunk with its arrival time."""

    def __init__(self, memory_s: float = MEMORY_S, rate: int = INPUT_RATE_HZ) -> None:
        self.rate = rate
        self._keep = round(memory_s * rate)
        # (stream position of its first sample, PCM16, arrival time)
        self._chunks: deque[tuple[int, bytes, float]] = deque()
        self._position = 0  # samples received

    def add(self, pcm: bytes, t: float) -> None:
        """``pcm`` arrived at ``t`` (``time.time()`` seconds)."""
        pcm = pcm[: len(pcm) // SAMPLE_BYTES * SAMPLE_BYTES]
        self._chunks.append((self._position, pcm, t))
        self._position += len(pcm) // SAMPLE_BYTES
        while self._chunks and self._end(self._chunks[0]) < self._position - self._keep:
            self._chunks.popleft()

    @staticmethod
    def _end(chunk: tuple[int, bytes, float]) -> int:
        return chunk[0] + len(chunk[1]) // SAMPLE_BYTES

    def span(self, start_s: float, end_s: float) -> tuple[Samples, float] | None:
        """The samples from ``start_s`` to ``end_s`` (seconds into the stream, in
        full-scale units) and when the first was captured (``time.time()``), or None when
        they are no longer all kept.

        The capture time is the earliest any chunk of the span allows (its arrival minus
        the audio after the sample in it): lateness on the way only delays a chunk.
        """
        first, last = round(start_s * self.rate), round(end_s * self.rate)
        chunks = [c for c in self._chunks if c[0] < last and self._end(c) > first]
        if not chunks or chunks[0][0] > first or last <= first:
            return None
        joined = np.frombuffer(b"".join(c[1] for c in chunks), dtype="<i2")
        offset = first - chunks[0][0]
        captured = min(c[2] - (self._end(c) - first) / self.rate for c in chunks)
        return joined[offset : offset + last - first].astype(np.float64) / 32768.0, captured


class EchoEar:
    """What one connection needs to know its own voice in what it hears: its
    :class:`OwnVoice` and its :class:`Hearing`. Disabled (``enabled=False``), it keeps
    nothing and hears no echo."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.voice = OwnVoice()
        self.hearing = Hearing()

    def heard(self, pcm: bytes, t: float) -> None:
        """Microphone audio arrived at ``t`` (``time.time()``), fed to the detector too."""
        if self.enabled:
            self.hearing.add(pcm, t)

    def spoke(self, text: str, pcm: bytes, started: float) -> None:
        """A reply's first chunk went out at ``started`` (see :meth:`OwnVoice.spoke`)."""
        if self.enabled:
            self.voice.spoke(text, pcm, started)

    def sent(self, sent_s: float) -> None:
        """The reply in progress has sent ``sent_s`` seconds of its audio."""
        if self.enabled:
            self.voice.sent(sent_s)

    def cut(self, at: float) -> None:
        """The reply in progress was interrupted at ``at`` (see :meth:`OwnVoice.cut`)."""
        if self.enabled:
            self.voice.cut(at)

    def words(self, start_s: float, end_s: float) -> str | None:
        """The words the utterance from ``start_s`` to ``end_s`` (seconds into the stream)
        repeats when it is mostly the connection's own voice; None when it is not (or
        when it is, but no word of it was heard)."""
        span = self.hearing.span(start_s, end_s) if self.enabled else None
        echo = None if span is None else echo_of(span[0], span[1], self.voice)
        return " ".join(echo.words) if echo is not None and echo.words else None


@dataclass(frozen=True)
class Echo:
    """An utterance found to be mostly the emulator's own voice: ``share`` of its energy
    the voice explains, the median ``delay_s`` from playing to hearing, and the ``words``
    it repeats (in order; empty if no word's middle was heard)."""

    share: float
    delay_s: float
    words: tuple[str, ...]


@dataclass(frozen=True)
class _Block:
    start: int  # its first sample in the utterance
    size: int
    energy: float
    r: float  # the best |normalized correlation| over the delays
    delay_s: float


def best_match(block: Samples, voice: Samples) -> tuple[float, int]:
    """The best ``|r|`` of ``block`` against every window of ``voice`` of its length, and
    the window's start (``voice`` is longer by the delays searched)."""
    n, lags = block.size, voice.size - block.size + 1
    size = 1 << math.ceil(math.log2(n + voice.size))
    products = np.fft.irfft(np.fft.rfft(voice, size) * np.conj(np.fft.rfft(block, size)), size)
    dots = products[:lags]
    sums = np.concatenate(([0.0], np.cumsum(voice * voice)))
    window = sums[n : n + lags] - sums[:lags]
    floor = n * 10 ** (SILENT_DBFS / 10)
    norm = np.sqrt(np.maximum(window, floor) * float(np.dot(block, block)))
    r = np.where(window > floor, np.abs(dots) / np.maximum(norm, 1e-30), 0.0)
    best = int(np.argmax(r))
    return float(r[best]), best


def echo_of(
    heard: Samples,
    captured: float,
    voice: OwnVoice,
    *,
    rate: int = INPUT_RATE_HZ,
    least_share: float = ECHO_SHARE,
) -> Echo | None:
    """Whether ``heard`` (an utterance in full-scale units, its first sample captured at
    ``captured``, ``time.time()`` seconds) is mostly ``voice`` played back: the voice
    explains at least ``least_share`` of its energy. None if not."""
    whole_s = heard.size / rate
    heard = heard[: round(MAX_ANALYSED_S * rate)]
    end = captured + heard.size / rate
    played = voice.played(captured - MAX_DELAY_S, end - MIN_DELAY_S, rate)
    if not played.any():
        return None
    step, spread = round(BLOCK_S * rate), round((MAX_DELAY_S - MIN_DELAY_S) * rate)
    blocks: list[_Block] = []
    for i in range(0, heard.size, step):
        block = heard[i : i + step]
        if block.size < MIN_BLOCK_S * rate:
            break
        r, lag = best_match(block, played[i : i + block.size + spread])
        energy = float(np.dot(block, block))
        blocks.append(_Block(i, block.size, energy, r, MAX_DELAY_S - lag / rate))
    total = sum(b.energy for b in blocks)
    if total <= 0:
        return None
    share = sum(b.energy * b.r**2 for b in blocks) / total
    if share < least_share or share <= 0:
        return None
    best = max(b.r for b in blocks)
    matched = [b for b in blocks if b.r**2 >= min(ECHO_SHARE, best**2)]
    start = min(captured + b.start / rate - b.delay_s for b in matched)
    stop = max(captured + (b.start + b.size) / rate - b.delay_s for b in matched)
    if matched[-1] is blocks[-1]:  # echo to the end of what was analysed: the rest too
        stop = max(stop, captured + whole_s - blocks[-1].delay_s)
    delay = float(np.median([b.delay_s for b in matched]))
    return Echo(share, delay, tuple(voice.words(start, stop)))
