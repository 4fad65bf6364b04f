"""How well the emulator recognises its own voice in what it hears (speaker echo).

python -m bench.echo_detector     # about a minute; prints one line per case and a summary

The emulator's replies (espeak-ng at 24 kHz, as it speaks them) go through a device chain
like a browser's: up to 48 kHz (linear), an echo path (a delay, a gain, optionally a small
room's reverberation or a clock 100 ppm off), noise 20 dB below the echo, optionally a user
speaking over it, then down to 16 kHz (a windowed-sinc low-pass and decimation). That
microphone stream arrives in 100 ms chunks, a few milliseconds late each, and goes through
the emulator's own utterance detector, :class:`~screenshare_widget.emulator.echo.Hearing`
and :func:`~screenshare_widget.emulator.echo.echo_of`, exactly as a connection would. Echo
too quiet for the detector to hear as speech (-30 dB) is checked on its known stretch.

Negatives are a user's speech (other voices, other words), tones and noise heard while a
reply played, and a user speaking 6 dB or more over the echo.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import numpy as np

from screenshare_widget.emulator.echo import ECHO_SHARE, Hearing, OwnVoice, echo_of
from screenshare_widget.emulator.speech import Synthesizer
from screenshare_widget.emulator.vad import UtteranceDetector, UtteranceEnded, VadConfig

IN_RATE, OUT_RATE, DEVICE_RATE = 16_000, 24_000, 48_000
CHUNK_S = 0.1
REPLY = (
    "You spoke for 1.8 seconds. I have received 5 screen frames; the latest is 1024 by "
    "576 pixels, 77 kilobytes."
)
USER_LINES = (
    "Stop, stop. What about the weekend?",
    "Can you read the second column of this table for me?",
    "Hold on, I want to scroll down to the chart first.",
)
USER_VOICES = ("en-gb+f3", "en-us+m2", "en-gb-scotland")
#: When the reply starts playing in the simulated stream (seconds).
PLAY_AT = 1.0


@dataclass(frozen=True)
class Case:
    name: str
    echo: bool  # whether it should be detected
    mic: np.ndarray  # 16 kHz float microphone stream, t=0 at the stream's start
    known: tuple[float, float] | None = None  # the stretch to check when too quiet for the VAD


def to_device(pcm24: bytes) -> np.ndarray:
    x = np.frombuffer(pcm24, dtype="<i2").astype(np.float64) / 32768.0
    n = x.size * DEVICE_RATE // OUT_RATE
    return np.interp(np.arange(n) * OUT_RATE / DEVICE_RATE, np.arange(x.size), x)


def to_mic(x48: np.ndarray) -> np.ndarray:
    taps = np.arange(-63, 64)
    cutoff = 7_200 / DEVICE_RATE
    kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(taps.size)
    return np.convolve(x48, kernel / kernel.sum(), mode="same")[:: DEVICE_RATE // IN_RATE]


def room(rng: np.random.Generator, rt60_s: float, tail_share: float) -> np.ndarray:
    """A room's response at 48 kHz: the direct sound, then from 3 ms a tail decaying 60 dB
    in ``rt60_s`` whose energy is ``tail_share`` of the direct's."""
    t = np.arange(round(rt60_s * DEVICE_RATE)) / DEVICE_RATE
    tail = rng.standard_normal(t.size) * 10 ** (-3 * t / rt60_s)
    tail[: round(0.003 * DEVICE_RATE)] = 0
    tail *= np.sqrt(tail_share / np.sum(tail**2))
    tail[0] = 1.0
    return tail


def echo_stream(
    reply48: np.ndarray,
    *,
    delay_s: float,
    gain_db: float,
    length_s: float,
    rng: np.random.Generator,
    reverb: tuple[float, float] | None = None,
    drift_ppm: float = 0.0,
) -> np.ndarray:
    """The microphone (16 kHz) hearing the first ``length_s`` of the reply played at
    :data:`PLAY_AT`, ``delay_s`` later, at ``gain_db``; noise 20 dB below the echo."""
    played = reply48[: round(length_s * DEVICE_RATE)]
    if drift_ppm:
        positions = np.arange(played.size) * (1 + drift_ppm * 1e-6)
        played = np.interp(positions, np.arange(played.size), played)
    if reverb is not None:
        response = room(rng, *reverb)
        size = 1 << (played.size + response.size).bit_length()
        wet = np.fft.irfft(np.fft.rfft(played, size) * np.fft.rfft(response, size), size)
        played = wet[: played.size]
    total = round((PLAY_AT + delay_s + length_s + 2.0) * DEVICE_RATE)
    mic = np.zeros(total)
    at = round((PLAY_AT + delay_s) * DEVICE_RATE)
    mic[at : at + played.size] = played * 10 ** (gain_db / 20)
    level = np.sqrt(np.mean(mic[at : at + played.size] ** 2))
    mic += rng.standard_normal(total) * level * 0.1
    return to_mic(mic)


def mix(a: np.ndarray, b: np.ndarray, at_s: float) -> np.ndarray:
    out = np.zeros(max(a.size, round(at_s * IN_RATE) + b.size))
    out[: a.size] += a
    out[round(at_s * IN_RATE) : round(at_s * IN_RATE) + b.size] += b
    return out


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x[np.abs(x) > 1e-4] ** 2)))


async def speech(text: str, voice: str) -> np.ndarray:
    pcm = await Synthesizer(voice=voice).synthesize(text)
    return to_mic(to_device(pcm))


async def cases(reply48: np.ndarray, rng: np.random.Generator) -> list[Case]:
    out: list[Case] = []
    for delay in (0.0, 0.1, 0.25, 0.48):
        for gain in (0, -10, -20):
            for length in (0.8, 3.0):
                mic = echo_stream(reply48, delay_s=delay, gain_db=gain, length_s=length, rng=rng)
                out.append(Case(f"echo {delay * 1000:.0f} ms {gain} dB {length} s", True, mic))
        mic = echo_stream(reply48, delay_s=delay, gain_db=-30, length_s=3.0, rng=rng)
        known = (PLAY_AT + delay, PLAY_AT + delay + 3.0)
        out.append(Case(f"echo {delay * 1000:.0f} ms -30 dB (known)", True, mic, known))
    for rt60, share in ((0.3, 0.5), (0.5, 1.0)):
        for delay in (0.05, 0.3):
            mic = echo_stream(
                reply48, delay_s=delay, gain_db=-10, length_s=3, rng=rng, reverb=(rt60, share)
            )
            name = f"echo {delay * 1000:.0f} ms, room {rt60} s, tail {share:.0%}"
            out.append(Case(name, True, mic))
    mic = echo_stream(reply48, delay_s=0.15, gain_db=-10, length_s=10.0, rng=rng)
    out.append(Case("echo 150 ms -10 dB 10 s (4 s analysed)", True, mic))
    mic = echo_stream(reply48, delay_s=0.2, gain_db=-10, length_s=6.0, rng=rng, drift_ppm=100)
    out.append(Case("echo 200 ms, 6 s, clock 100 ppm off", True, mic))
    silence = np.zeros(round((PLAY_AT + 6.0) * IN_RATE))
    for line, voice in zip(USER_LINES, USER_VOICES, strict=True):
        user = await speech(line, voice)
        out.append(Case(f"user alone ({voice})", False, mix(silence, 0.3 * user, PLAY_AT)))
        base = echo_stream(reply48, delay_s=0.15, gain_db=-10, length_s=3.0, rng=rng)
        echo_level = rms(base)
        for over_db in (10, 6, -6):
            scaled = user * echo_level * 10 ** (over_db / 20) / rms(user)
            mic = mix(base, scaled, PLAY_AT + 0.2)
            out.append(Case(f"user {over_db:+d} dB over echo ({voice})", over_db < 0, mic))
    t = np.arange(round(2.0 * IN_RATE)) / IN_RATE
    for hz in (220.0, 440.0, 1000.0):
        tone = 0.1 * np.sin(2 * np.pi * hz * t)
        out.append(Case(f"tone {hz:.0f} Hz", False, mix(silence, tone, PLAY_AT + 0.5)))
    noise = 0.05 * rng.standard_normal(round(2.0 * IN_RATE))
    out.append(Case("noise", False, mix(silence, noise, PLAY_AT + 0.5)))
    return out


@dataclass(frozen=True)
class Outcome:
    heard: bool  # the utterance detector found an utterance (or the stretch was known)
    share: float  # of its energy the own voice explains (0 if none)
    words: tuple[str, ...]
    cost_s: float  # span and echo_of, for the longest utterance


def run_case(case: Case, pcm24: bytes, rng: np.random.Generator) -> Outcome:
    """Feed the case's stream as a connection would; the verdict on its longest utterance."""
    voice = OwnVoice()
    hearing = Hearing()
    detector = UtteranceDetector(VadConfig(end_ms=700))
    base = 1_000_000.0
    voice.spoke(REPLY, pcm24, base + PLAY_AT)
    voice.sent(len(pcm24) / (2 * OUT_RATE))
    step = round(CHUNK_S * IN_RATE)
    utterances: list[UtteranceEnded] = []
    pcm = (np.clip(case.mic, -1, 1) * 32767).astype("<i2").tobytes()
    for i in range(0, len(pcm), 2 * step):
        chunk = pcm[i : i + 2 * step]
        arrival = base + (i // 2 + len(chunk) // 2) / IN_RATE + float(rng.uniform(0.002, 0.03))
        hearing.add(chunk, arrival)
        utterances += [e for e in detector.feed(chunk) if isinstance(e, UtteranceEnded)]
    utterances += [e for e in detector.flush() if isinstance(e, UtteranceEnded)]
    if case.known is not None:
        utterances = [UtteranceEnded(*case.known)]
    if not utterances:
        return Outcome(False, 0.0, (), 0.0)
    longest = max(utterances, key=lambda u: u.duration_s)
    began = time.perf_counter()
    span = hearing.span(longest.start_s, longest.end_s)
    found = None if span is None else echo_of(span[0], span[1], voice, least_share=0.0)
    cost = time.perf_counter() - began
    if found is None:
        return Outcome(True, 0.0, (), cost)
    return Outcome(True, found.share, found.words if found.share >= ECHO_SHARE else (), cost)


async def main() -> None:
    rng = np.random.default_rng(14)
    pcm24 = await Synthesizer().synthesize(REPLY)
    reply48 = to_device(pcm24)
    echoes: list[float] = []
    others: list[float] = []
    unheard = 0
    costs: list[float] = []
    for case in await cases(reply48, rng):
        got = run_case(case, pcm24, rng)
        if not got.heard:
            unheard += 1
            print(f"--  {case.name:44s} no utterance (too quiet for the VAD)")
            continue
        costs.append(got.cost_s)
        (echoes if case.echo else others).append(got.share)
        right = (got.share >= ECHO_SHARE) == case.echo
        mark = "ok " if right else "BAD"
        said = " ".join(got.words)
        print(f"{mark} {case.name:44s} {got.cost_s * 1000:5.1f} ms share {got.share:.2f} {said!r}")
    hits = sum(share >= ECHO_SHARE for share in echoes)
    alarms = sum(share >= ECHO_SHARE for share in others)
    print(
        f"echo detected {hits}/{len(echoes)} (lowest share {min(echoes):.2f}); false alarms "
        f"{alarms}/{len(others)} (highest share {max(others):.2f}); {unheard} not heard as "
        f"speech; cost per utterance median {statistics.median(costs) * 1000:.1f} ms, "
        f"max {max(costs) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
