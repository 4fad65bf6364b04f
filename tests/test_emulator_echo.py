"""The emulator's echo detector (:mod:`screenshare_widget.emulator.echo`), on its own.

A reply is espeak-ng speech at 24 kHz made of two phrases said one after the other, so the
time each phrase takes is known. Echo is that reply as a client would play and hear it:
resampled to 16 kHz by another method than the detector's (linear interpolation), delayed,
attenuated, with noise 20 dB under it; it arrives in 100 ms chunks a little late each.
"""

from __future__ import annotations

import numpy as np
import pytest

from screenshare_widget.emulator import echo
from screenshare_widget.emulator.echo import (
    BLOCK_S,
    FLUSH_S,
    MAX_ANALYSED_S,
    EchoEar,
    Hearing,
    OwnVoice,
    Spoken,
    echo_of,
)

from .media import resample, speech_pcm, tone_pcm

OUT, IN = 24_000, 16_000
FIRST = "Let me look at your screen."
SECOND = "The chart shows sales by region for the last quarter."
REPLY = f"{FIRST} {SECOND}"
#: When the reply's first chunk went out (time.time() seconds, any origin).
STARTED = 5_000.0


def floats(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def reply() -> tuple[bytes, float]:
    """The reply's 24 kHz PCM and when its second phrase begins in it (seconds)."""
    first, second = speech_pcm(FIRST, rate=OUT), speech_pcm(SECOND, rate=OUT)
    return first + second, len(first) / (2 * OUT)


def voice_of(pcm: bytes, sent_s: float | None = None) -> OwnVoice:
    voice = OwnVoice()
    voice.spoke(REPLY, pcm, STARTED)
    voice.sent(len(pcm) / (2 * OUT) if sent_s is None else sent_s)
    return voice


def played(pcm: bytes, start_s: float, end_s: float) -> np.ndarray:
    """The reply from ``start_s`` to ``end_s`` (seconds into it) as a 16 kHz microphone
    hears it at full gain."""
    x = floats(pcm)[round(start_s * OUT) : round(end_s * OUT)]
    return resample(x, OUT, IN)


def heard(
    mic: np.ndarray, at: float, rng: np.random.Generator, *, noise_db: float = -20.0
) -> tuple[Hearing, float, float]:
    """``mic`` captured from ``at`` (time.time() s) with noise ``noise_db`` under its level,
    arriving in 100 ms chunks 2-30 ms late; the Hearing, and where the sound is in the
    stream (seconds), first and last sample above the noise."""
    level = float(np.sqrt(np.mean(mic[np.abs(mic) > 1e-4] ** 2))) if mic.any() else 1e-3
    lead = np.zeros(IN // 2)
    stream = np.concatenate([lead, mic, np.zeros(IN // 2)])
    stream += rng.standard_normal(stream.size) * level * 10 ** (noise_db / 20)
    hearing = Hearing()
    step = IN // 10
    start = at - lead.size / IN
    for i in range(0, stream.size, step):
        chunk = stream[i : i + step]
        arrival = start + (i + chunk.size) / IN + float(rng.uniform(0.002, 0.03))
        hearing.add(pcm16(chunk), arrival)
    return hearing, lead.size / IN, (lead.size + mic.size) / IN


def verdict(hearing: Hearing, span: tuple[float, float], voice: OwnVoice) -> echo.Echo | None:
    got = hearing.span(*span)
    assert got is not None
    return echo_of(got[0], got[1], voice)


# ---- its own voice --------------------------------------------------------------------------


@pytest.mark.parametrize("delay_s", [0.0, 0.12, 0.3, 0.48])
@pytest.mark.parametrize("gain_db", [0.0, -15.0, -30.0])
def test_its_own_voice_at_any_delay_and_gain_is_echo_with_the_words_it_repeats(
    reply: tuple[bytes, float], delay_s: float, gain_db: float
) -> None:
    pcm, second_at = reply
    rng = np.random.default_rng(round(delay_s * 1000 - gain_db))
    total_s = len(pcm) / (2 * OUT)
    mic = played(pcm, second_at, total_s) * 10 ** (gain_db / 20)
    hearing, start, end = heard(mic, STARTED + second_at + delay_s, rng)
    found = verdict(hearing, (start, end), voice_of(pcm))
    assert found is not None
    assert found.share > 0.9
    assert found.delay_s == pytest.approx(delay_s, abs=0.04)
    expected = SECOND.split()
    # Words are placed by their share of characters: a word at either edge may shift.
    assert expected[1:-1] == [w for w in found.words if w in expected[1:-1]]
    assert set(found.words) <= set(expected) | {FIRST.split()[-1]}


def test_the_words_are_those_played_where_the_echo_was_heard(reply: tuple[bytes, float]) -> None:
    pcm, second_at = reply
    rng = np.random.default_rng(3)
    mic = played(pcm, 0.0, second_at) * 0.3  # only the first phrase comes back
    hearing, start, end = heard(mic, STARTED + 0.2, rng)
    found = verdict(hearing, (start, end), voice_of(pcm))
    assert found is not None
    assert " ".join(found.words) in (FIRST, f"{FIRST} The")


def test_a_long_echo_is_analysed_for_a_bounded_time_and_its_words_run_to_its_end(
    reply: tuple[bytes, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    pcm, _ = reply
    pcm = pcm + pcm  # the reply said twice: longer than what is analysed
    total_s = len(pcm) / (2 * OUT)
    assert total_s > MAX_ANALYSED_S + 1
    calls: list[int] = []
    best_match = echo.best_match

    def counted(block: np.ndarray, voice: np.ndarray) -> tuple[float, int]:
        calls.append(block.size)
        return best_match(block, voice)

    monkeypatch.setattr(echo, "best_match", counted)
    voice = OwnVoice()
    voice.spoke(f"{REPLY} {REPLY}", pcm, STARTED)
    voice.sent(total_s)
    hearing, start, end = heard(played(pcm, 0.0, total_s) * 0.3, STARTED + 0.1, _rng())
    found = verdict(hearing, (start, end), voice)
    assert found is not None
    assert len(calls) == round(MAX_ANALYSED_S / BLOCK_S)
    assert found.words[-3:] == tuple(SECOND.split()[-3:])
    assert len(found.words) >= 2 * len(REPLY.split()) - 2


def _rng() -> np.random.Generator:
    return np.random.default_rng(11)


# ---- not its own voice ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "voice"),
    [
        ("Stop, stop. What about the weekend?", "en-gb+f3"),
        ("The chart shows sales by region for the last quarter.", "en-gb-scotland"),
    ],
)
def test_someone_else_speaking_while_it_spoke_is_not_echo(
    reply: tuple[bytes, float], text: str, voice: str
) -> None:
    # The second line is the reply's own words, in another voice: words are not the test.
    pcm, _ = reply
    user = floats(speech_pcm(text, voice=voice)) * 0.5
    hearing, start, end = heard(user, STARTED + 0.5, _rng())
    assert verdict(hearing, (start, end), voice_of(pcm)) is None


@pytest.mark.parametrize("hz", [220.0, 440.0, 1000.0])
def test_tones_and_noise_are_not_echo(reply: tuple[bytes, float], hz: float) -> None:
    pcm, _ = reply
    hearing, start, end = heard(floats(tone_pcm(2.0, hz=hz)), STARTED + 0.5, _rng())
    assert verdict(hearing, (start, end), voice_of(pcm)) is None
    noise = _rng().standard_normal(2 * IN) * 0.05
    hearing, start, end = heard(noise, STARTED + 0.5, _rng(), noise_db=-60)
    assert verdict(hearing, (start, end), voice_of(pcm)) is None


@pytest.mark.parametrize(
    ("user_over_echo_db", "is_echo"), [(10.0, False), (6.0, False), (-10.0, True)]
)
def test_a_user_speaking_over_the_echo_is_not_echo_unless_the_echo_is_most_of_it(
    reply: tuple[bytes, float], user_over_echo_db: float, is_echo: bool
) -> None:
    pcm, _ = reply
    echoed = played(pcm, 0.0, 3.0) * 0.1
    user = floats(speech_pcm("Wait, what are the numbers for the north?", voice="en-gb+f3"))
    user *= np.sqrt(np.mean(echoed**2) / np.mean(user[np.abs(user) > 1e-4] ** 2))
    user *= 10 ** (user_over_echo_db / 20)
    mic = np.zeros(max(echoed.size, user.size + IN // 5))
    mic[: echoed.size] += echoed
    mic[IN // 5 : IN // 5 + user.size] += user  # the user starts 0.2 s into the echo
    hearing, start, end = heard(mic, STARTED + 0.15, _rng())
    assert (verdict(hearing, (start, end), voice_of(pcm)) is not None) is is_echo


def test_its_voice_heard_too_late_or_never_sent_is_not_echo(reply: tuple[bytes, float]) -> None:
    pcm, second_at = reply
    mic = played(pcm, second_at, second_at + 2.0) * 0.3
    # Heard 1.5 s after it played: no client takes that long, so it is not that echo.
    hearing, start, end = heard(mic, STARTED + second_at + 1.5, _rng())
    assert verdict(hearing, (start, end), voice_of(pcm)) is None
    # Only the first phrase went out (a barge-in cut the reply): the second was never played.
    hearing, start, end = heard(mic, STARTED + second_at + 0.1, _rng())
    assert verdict(hearing, (start, end), voice_of(pcm, sent_s=second_at)) is None
    assert verdict(hearing, (start, end), OwnVoice()) is None  # nothing said at all


# ---- the parts --------------------------------------------------------------------------------


def test_words_are_apportioned_by_characters_over_the_voiced_audio() -> None:
    silence, voiced = bytes(2 * OUT // 2), tone_pcm(2.0, rate=OUT)
    spoken = Spoken("aa bb cc dd", silence + voiced + silence, started=100.0, sent_s=3.0)
    assert spoken.voiced() == pytest.approx((0.5, 2.5), abs=0.021)
    # "aa" is centred at 1/11 of the voice, "dd" at 10/11: 0.68 s and 2.32 s into the reply.
    assert spoken.words_within(100.6, 100.8) == ["aa"]
    assert spoken.words_within(100.0, 103.0) == ["aa", "bb", "cc", "dd"]
    assert spoken.words_within(102.2, 102.4) == ["dd"]
    cut = Spoken("aa bb cc dd", silence + voiced + silence, started=100.0, sent_s=1.5)
    assert cut.words_within(100.0, 103.0) == ["aa", "bb"]  # the rest never went out


def test_own_voice_is_laid_out_as_it_played_and_forgotten_after_15_s() -> None:
    voice = OwnVoice()
    one = tone_pcm(1.0, rate=OUT)
    voice.spoke("one", one, 10.0)
    voice.sent(0.5)
    got = voice.played(9.5, 11.5)
    assert got.size == 2 * IN
    loud = np.flatnonzero(np.abs(got) > 0.05)
    assert loud[0] / IN == pytest.approx(0.5, abs=0.01)  # from 10.0 s
    assert loud[-1] / IN == pytest.approx(1.0, abs=0.01)  # to 10.5 s: what was sent
    voice.spoke("two", one, 20.0)
    voice.sent(1.0)
    voice.cut(20.3)  # interrupted: the client stops playing it FLUSH_S later
    assert voice.replies[-1].sent_s == pytest.approx(0.3 + FLUSH_S)
    voice.cut(25.0)  # (a cut after the end changes nothing)
    assert voice.replies[-1].sent_s == pytest.approx(0.3 + FLUSH_S)
    voice.spoke("three", one, 30.0)  # "one" ended 19.5 s before: forgotten
    assert [r.text for r in voice.replies] == ["two", "three"]


def test_hearing_dates_a_span_by_its_earliest_chunk_and_forgets_after_15_s() -> None:
    hearing = Hearing()
    chunk = bytes(2 * IN // 10)  # 100 ms
    for n, late in enumerate([0.05, 0.01, 0.2]):
        hearing.add(chunk, 100.0 + (n + 1) / 10 + late)  # captured from 100.0 s on
    span = hearing.span(0.05, 0.25)
    assert span is not None
    samples, captured = span
    assert samples.size == round(0.2 * IN)
    assert captured == pytest.approx(100.05 + 0.01)  # the second chunk was the least late
    for _ in range(160):
        hearing.add(chunk, 200.0)
    assert hearing.span(0.05, 0.25) is None  # older than 15 s
    assert hearing.span(15.0, 16.0) is not None


def test_a_disabled_ear_keeps_nothing_and_hears_no_echo(reply: tuple[bytes, float]) -> None:
    pcm, _ = reply
    for enabled in (True, False):
        ear = EchoEar(enabled=enabled)
        ear.spoke(REPLY, pcm, STARTED)
        ear.sent(len(pcm) / (2 * OUT))
        mic = played(pcm, 0.0, 3.0) * 0.3
        stream = np.concatenate([np.zeros(IN // 2), mic, np.zeros(IN // 2)])
        for i in range(0, stream.size, IN // 10):
            chunk = stream[i : i + IN // 10]
            ear.heard(pcm16(chunk), STARTED - 0.5 + 0.1 + (i + chunk.size) / IN)
        words = ear.words(0.5, 0.5 + mic.size / IN)
        if enabled:
            assert words is not None and words.startswith(FIRST.split()[0])
        else:
            assert words is None and not ear.voice.replies
