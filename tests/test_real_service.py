"""The product with the real SDK against the emulator behaving like the real Live service
(research/real-service-behaviour.md D1-D9): the relay, the Gemini adapter and the pricing
survive late pongs, silence after goAway, barge-ins ended twice, refused handles, an
expired key and a 1008 around a tool call."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from screenshare_widget import gemini
from screenshare_widget.config import SessionConfig
from screenshare_widget.echo import words
from screenshare_widget.emulator import Fault, Lifetimes, LiveEmulator, Realism
from screenshare_widget.pricing import spend
from screenshare_widget.relay import Relay, RelayState
from screenshare_widget.timings import Timings
from screenshare_widget.tools import Toolbox

from .conftest import wait_until
from .fakes import RecordingSink, relay_on
from .media import chunks, silence_pcm, tone_pcm

CHUNK_BYTES = 1280  # 40 ms of 16 kHz PCM16, as the page sends


#: A quick backoff, so reconnections come fast.
QUICK = Timings(backoff_first_s=0.05, backoff_max_s=0.2)


@contextmanager
def running(
    emu: LiveEmulator, toolbox: Toolbox | None = None, timings: Timings = QUICK
) -> Iterator[Relay]:
    """A relay (with ``timings``) talking to ``emu`` through the real SDK, live; both stop
    on exit."""
    with relay_on(emu, toolbox=toolbox, timings=timings) as relay:
        wait_until(lambda: relay.state is RelayState.LIVE, 10, "the first connection")
        yield relay


def talk(relay: Relay, pcm: bytes) -> None:
    """Feed ``pcm`` like a microphone: 40 ms chunks in real time, dated by the page clock."""
    for chunk in chunks(pcm, CHUNK_BYTES):
        relay.feed_audio(chunk, time.time() * 1000)
        time.sleep(len(chunk) / 32_000)


def utterance(seconds: float = 0.8) -> bytes:
    """A tone the emulator's VAD takes for speech, then the quiet that ends it."""
    return tone_pcm(seconds) + silence_pcm(1.2)


# ---- D1 ----------------------------------------------------------------------------------------


def test_late_pongs_do_not_end_a_connection_that_delivers_messages() -> None:
    timings = replace(QUICK, keepalive_interval_s=0.2, silence_limit_s=1.0)
    # Pongs come after twice the silence limit; the service's {} messages keep coming.
    emu = LiveEmulator(realism=Realism(pong_delay_s=2.0, empty_message_every_s=0.3))
    with running(emu, timings=timings) as relay:
        time.sleep(4.0)
        assert relay.counters.reconnects == 0
        assert emu.traffic.connections == 1


def test_late_pongs_alone_keep_an_idle_connection_within_the_limit() -> None:
    timings = replace(QUICK, keepalive_interval_s=0.2, silence_limit_s=1.5)
    emu = LiveEmulator(realism=Realism(pong_delay_s=0.8, empty_message_every_s=None))
    with running(emu, timings=timings) as relay:
        time.sleep(4.0)
        assert relay.counters.reconnects == 0


def test_a_connection_silent_past_the_limit_is_left() -> None:
    timings = replace(QUICK, keepalive_interval_s=0.2, silence_limit_s=1.0)
    emu = LiveEmulator(realism=Realism(pong_delay_s=3.0, empty_message_every_s=None))
    with running(emu, timings=timings) as relay:
        wait_until(lambda: relay.counters.connections >= 2, 10, "a new connection")
        talk(relay, silence_pcm(0.2))
        wait_until(lambda: relay.handovers, 5)
        assert relay.handovers[0].reason == "1006: keepalive timeout"


# ---- D2 ----------------------------------------------------------------------------------------


def test_a_question_asked_at_the_go_away_is_answered_on_the_next_connection() -> None:
    # goAway 2 s after the connection opened, then silence for the remaining 18 s.
    emu = LiveEmulator(
        realism=Realism(), lifetimes=Lifetimes(connection_s=20.0, go_away_before_s=18.0)
    )
    with running(emu) as relay:
        time.sleep(1.6)
        talk(relay, utterance(1.0))  # the goAway comes while the user speaks
        wait_until(lambda: relay.handovers, 5, "the handover")
        wait_until(
            lambda: any(t.role == "model" and t.done for t in relay.transcript), 15, "an answer"
        )
    rec = emu.traffic
    (go_away,) = [m for m in rec.sent if "goAway" in m.keys and m.connection == 0]
    setup = next(m for m in rec.messages if m.kind == "setup" and m.connection == 1)
    assert setup.t - go_away.t < 2.0  # no dead air waiting for the silent connection
    (handover,) = relay.handovers
    assert handover.reason == "goAway" and handover.resumed
    assert handover.replayed_s > 0.3  # what the old connection heard went to the new one
    users = [t for t in relay.transcript if t.role == "user"]
    models = [t for t in relay.transcript if t.role == "model"]
    assert len(users) == 1, relay.transcript.snapshot()
    assert models[-1].text.strip().startswith("You spoke for"), models
    assert not any("Deadline" in reason for _, _, reason in rec.closes)


# ---- D3, D4 --------------------------------------------------------------------------------------


def test_a_barge_in_is_one_user_turn_and_every_turns_usage_counts() -> None:
    emu = LiveEmulator(realism=Realism())
    with running(emu) as relay:
        talk(relay, utterance())
        wait_until(lambda: relay.counters.audio_chunks_out > 0, 10, "the reply")
        talk(relay, utterance())  # talks over the reply
        wait_until(
            lambda: (
                len(relay.usage) >= 2
                and sum(t.role == "model" for t in relay.transcript) == 2
                and relay.transcript[-1].done
            ),
            20,
            "the answer to the barge-in",
        )
    turns = relay.transcript.snapshot()
    assert [(t.role, t.interrupted) for t in turns] == [
        ("user", False),
        ("model", True),
        ("user", False),
        ("model", False),
    ], turns
    assert all(t.text.startswith("(spoke for") and t.text.endswith("s)") for t in turns[::2])
    first, second = relay.usage[:2]
    assert second.prompt_tokens > first.prompt_tokens  # each turn re-bills the context
    spent = spend(relay.usage, {"input:AUDIO": 3.0, "output:AUDIO": 12.0})
    assert spent.by_modality.get("input:UNLABELLED", 0) > 0
    assert spent.cost_usd is not None and spent.cost_usd > 0


# ---- D5 ----------------------------------------------------------------------------------------


def test_a_handle_refused_with_1011_gets_a_fresh_session() -> None:
    emu = LiveEmulator(
        realism=Realism(refused_handle_close=1011),
        lifetimes=Lifetimes(handle_ttl_s=0.01),
        faults=[Fault("drop", after_s=0.5, connection=0)],
    )
    with running(emu) as relay:
        wait_until(lambda: relay.handovers or relay.counters.connections >= 2, 10)
        talk(relay, silence_pcm(0.2))
        wait_until(lambda: relay.handovers, 5)
        (handover,) = relay.handovers
        assert not handover.resumed
        assert "refused to resume (1011" in handover.reason
        assert relay.state is RelayState.LIVE
    # The first connection, the refused handle twice, then a fresh session.
    assert len(emu.traffic.setups) == 4


# ---- D8: the assistant hearing itself ------------------------------------------------------------

#: The page's pre-roll, then the room: its speakers reach its microphone this late and quiet.
PREROLL_S, ROOM_DELAY_S, ROOM_GAIN = 0.1, 0.2, 0.3


class Room(RecordingSink):
    """A relay sink that is a page playing the model aloud, with no headphones: each
    playback generation plays back to back from its first chunk's arrival (after the
    pre-roll), an interruption stops it as the page's flush does, and :meth:`heard` is what
    the microphone beside the speakers captures."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._gen = 0
        self._played: list[list[Any]] = []  # [start, 24 kHz samples, stop] (time.time() s)

    def on_audio(self, pcm: bytes, gen: int) -> None:
        super().on_audio(pcm, gen)
        now, samples = time.time(), np.frombuffer(pcm, dtype="<i2") / 32768.0
        with self._lock:
            if gen != self._gen:
                return  # a flushed generation's
            last = self._played[-1] if self._played else None
            if last is None or last[2] <= now or last[0] + last[1].size / 24_000 < now:
                self._played.append([now + PREROLL_S, samples, float("inf")])
            else:
                last[1] = np.concatenate([last[1], samples])

    def on_interrupted(self, gen: int) -> None:
        super().on_interrupted(gen)
        with self._lock:
            self._gen = gen
            if self._played:
                self._played[-1][2] = min(self._played[-1][2], time.time())

    def heard(self, start: float, end: float) -> bytes:
        """The microphone from ``start`` to ``end`` (time.time() s) as 16 kHz PCM16."""
        captured = start + np.arange(round((end - start) * 16_000)) / 16_000
        played = captured - ROOM_DELAY_S
        mic = np.random.default_rng(round(start * 1000)).standard_normal(captured.size) * 1e-4
        with self._lock:
            for began, samples, stop in self._played:
                index = (played - began) * 24_000
                voice = np.interp(index, np.arange(samples.size), samples, left=0, right=0)
                mic += ROOM_GAIN * np.where(played < stop, voice, 0.0)
        return (np.clip(mic, -1, 1) * 32767).astype("<i2").tobytes()


def test_the_model_hearing_itself_through_the_speakers_is_flagged_in_the_cell() -> None:
    emu = LiveEmulator(realism=Realism())
    emu.start_in_thread()
    room = Room()
    relay = Relay(
        gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile)),
        SessionConfig(),
        room,
        timings=QUICK,
    )
    try:
        relay.start()
        wait_until(lambda: relay.state is RelayState.LIVE, 10, "the first connection")
        relay.say("Is it raining in Paris today?")
        start = time.time()
        for n in itertools.count(1):  # a microphone, in 40 ms chunks in real time
            end = start + n * 0.04
            time.sleep(max(0.0, end - time.time()))
            relay.feed_audio(room.heard(end - 0.04, end), end * 1000)
            if room.notices or end - start > 30:
                break
    finally:
        relay.close()
        emu.stop()
    assert room.notices == [
        "The assistant may be hearing itself: use headphones or lower the volume."
    ]
    (event,) = [e for e in relay.events if e.kind == "echo_suspected"]
    heard, matched = str(event.detail["heard"]), str(event.detail["matched"])
    # What it heard as the user was its own words: the emulator transcribed its echo.
    said = {w for t in relay.transcript if t.role == "model" for w in words(t.text)}
    assert words(heard) and set(words(heard)) <= said and matched, event.detail
    assert len(room.interrupts) >= 2  # it cut itself off, more than once
    users = [t.text for t in relay.transcript if t.role == "user" and not t.typed]
    assert users and not any(text.startswith("(spoke for") for text in users), users


# ---- D9 ----------------------------------------------------------------------------------------


def test_an_expired_key_fails_once_with_the_fix() -> None:
    emu = LiveEmulator(api_keys={"good"}, expired_keys={gemini.EMULATOR_KEY})
    emu.start_in_thread()
    relay = Relay(
        gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile)),
        SessionConfig(),
        RecordingSink(),
    )
    try:
        relay.start()
        wait_until(lambda: relay.state is RelayState.FAILED, 10)
        assert "expired" in relay.error.lower()
        assert "remove options" not in relay.error
        assert len(emu.traffic.setups) == 1
    finally:
        relay.close()
        emu.stop()


def get_time(tz: str) -> dict[str, str]:
    """The time in a time zone."""
    return {"tz": tz, "time": "12:00"}


def test_a_1008_around_a_tool_call_resumes_and_the_question_is_asked_again() -> None:
    emu = LiveEmulator(realism=Realism(tool_call_close_every=2))
    toolbox = Toolbox([get_time], declare=gemini.declare)
    with running(emu, toolbox) as relay:
        first = relay.ask("call get_time tz=UTC", timeout=20).result(25)
        assert "get_time returned" in first
        second = relay.ask("call get_time tz=CET", timeout=20).result(25)
        assert "get_time returned" in second and "CET" in second
        (handover,) = relay.handovers
        assert handover.reason.startswith("1008: Operation is not implemented")
        assert handover.resumed and handover.replayed_texts == 1
