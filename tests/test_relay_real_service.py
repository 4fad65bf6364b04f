"""The relay against scripted sequences the real Live service sends and the idealised
emulator never did (research/real-service-behaviour.md, D1-D5, D8): late pongs, silence
after goAway, interrupted then a separate turnComplete, refused handles, late user text."""

from __future__ import annotations

import asyncio
import time

import pytest

from screenshare_widget import timings as timing
from screenshare_widget.backend import LiveError, ServerMessage, Usage
from screenshare_widget.relay import REPLAY_MAX_BYTES, REPLAY_PREROLL_BYTES, Relay, Unanswered

from .conftest import wait_until
from .fakes import FakeBackend, FakeSession, RecordingSink, live, push, timed

VOICE = b"\x00\x10" * 640  # 40 ms at about -18 dBFS
QUIET = b"\0\0" * 640  # 40 ms of silence


class LatePongs(FakeSession):
    """Answers pings only after a long while, like the real service (8-30 s, D1)."""

    async def ping(self) -> None:
        await asyncio.sleep(3600)


# ---- D1: late pongs --------------------------------------------------------------------------


@timed(keepalive_interval_s=0.05, silence_limit_s=0.5)
def test_a_connection_that_delivers_messages_is_alive_whatever_its_pongs(
    relay: Relay, backend: FakeBackend
) -> None:
    backend.session_type = LatePongs
    session = live(relay, backend)
    end = time.monotonic() + 1.5  # three silence limits of unanswered pings
    while time.monotonic() < end:
        push(relay, session, ServerMessage())  # the real service sends {} and more meanwhile
        time.sleep(0.1)
    assert len(backend.sessions) == 1
    assert relay.counters.reconnects == 0
    # Then neither a message nor a pong: dead after the silence limit, and reconnected.
    live(relay, backend, count=2)
    assert "went silent" in "".join(error for _, error in relay._sink.states)  # type: ignore[attr-defined]


def test_the_silence_limit_leaves_room_for_the_real_services_late_pongs() -> None:
    assert timing.SILENCE_LIMIT_S >= 30.0  # real pongs: 8-30 s (R9)


# ---- D2: silence after goAway ----------------------------------------------------------------


def test_go_away_on_a_silent_service_hands_over_at_once_and_replays_the_question(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(resumption_handle="h-1", resumable=True))
    for _ in range(10):
        relay.feed_audio(VOICE)  # a question ...
    for _ in range(10):
        relay.feed_audio(QUIET)  # ... then quiet
    wait_until(lambda: len(session.audio) == 20)
    push(relay, session, ServerMessage(go_away_s=50.0))  # and then the service says nothing
    asked = time.monotonic()
    second = live(relay, backend, count=2)
    assert time.monotonic() - asked < 2.0
    assert backend.configs[-1][1] == "h-1"
    # The new connection hears the question first: the old one never answered it.
    wait_until(lambda: len(second.audio) >= 20)
    assert second.audio[:20] == session.audio[:20]
    relay.feed_audio(QUIET)
    wait_until(lambda: relay.handovers)
    (handover,) = relay.handovers
    assert handover.resumed and handover.reason == "goAway"
    assert handover.replayed_s == pytest.approx(0.8)
    assert handover.lost_s == 0
    assert [e.detail["audio_s"] for e in relay.events if e.kind == "replay"] == [0.8]


@timed(model_silent_s=0.3)
def test_go_away_mid_reply_hands_over_once_the_model_fell_silent(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    relay.feed_audio(VOICE)
    relay.feed_audio(QUIET)
    push(relay, session, ServerMessage(input_transcription="What is this?"))
    push(relay, session, ServerMessage(audio=b"\0\0" * 2400, output_transcription="It is"))
    push(relay, session, ServerMessage(go_away_s=50.0))
    end = time.monotonic() + 0.6
    while time.monotonic() < end:  # the reply goes on after the goAway: no handover
        push(relay, session, ServerMessage(audio=b"\0\0" * 240))
        assert len(backend.sessions) == 1, "handed over in the middle of a reply"
        time.sleep(0.05)
    silent = time.monotonic()  # ... then the service goes quiet mid-reply
    second = live(relay, backend, count=2)
    assert 0.25 < time.monotonic() - silent < 2.0
    turns = relay.transcript.snapshot()
    assert [(t.role, t.text, t.interrupted) for t in turns] == [
        ("user", "What is this?", False),
        ("model", "It is", True),
    ]
    wait_until(lambda: len(second.audio) >= 2)  # the cut answer's question goes again
    assert second.audio[:2] == [VOICE, QUIET]
    # The new connection transcribes it again: still one user turn, answered after the cut.
    push(relay, second, ServerMessage(input_transcription="What is this?"))
    push(relay, second, ServerMessage(audio=b"\0\0" * 240, output_transcription="A chart."))
    push(relay, second, ServerMessage(turn_complete=True))
    wait_until(lambda: len(relay.transcript) == 3 and relay.transcript[-1].done)
    assert [(t.role, t.text) for t in relay.transcript] == [
        ("user", "What is this?"),
        ("model", "It is"),
        ("model", "A chart."),
    ]


@timed(model_silent_s=0.3)
def test_go_away_after_a_complete_generation_does_not_wait_for_its_turn_complete(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(audio=b"\0\0" * 24_000, output_transcription="Long."))
    push(relay, session, ServerMessage(generation_complete=True))
    push(relay, session, ServerMessage(go_away_s=50.0))  # and no turnComplete ever comes
    asked = time.monotonic()
    live(relay, backend, count=2)
    assert time.monotonic() - asked < 2.0  # the page still plays the reply meanwhile
    (model,) = relay.transcript.snapshot()
    assert model.done and not model.interrupted  # all of it had come


def test_the_replay_is_bounded_and_says_what_was_lost() -> None:
    said = Unanswered()
    said.text("first typed")
    chunk = VOICE * 25  # one second of voice
    for _ in range(25):
        said.audio(chunk, True)
    said.text("and this")
    taken = said.take()
    assert sum(len(i.pcm) for i in taken.items) <= REPLAY_MAX_BYTES
    assert taken.lost_s == pytest.approx(5.0)
    assert [i.text for i in taken.items if i.text] == ["first typed", "and this"]  # texts stay
    assert len(said) == 0


def test_the_replay_keeps_only_a_pre_roll_a_pause_and_what_an_answer_left() -> None:
    said = Unanswered()
    for _ in range(100):
        said.audio(QUIET, False)
    assert said.audio_s * 32_000 <= REPLAY_PREROLL_BYTES
    said.audio(VOICE, True)
    for _ in range(1000):  # 40 s of quiet after a question: a silent connection's wait
        said.audio(QUIET, False)
    assert said.audio_s < 3.0
    assert sum(i.voiced for i in said.take().items) == 1  # the question is still there
    said.audio(VOICE, True)
    said.reply_began()
    said.text("typed while it spoke")
    said.audio(VOICE, True)
    said.answered()  # what came before the reply, and audio during it, were answered
    assert [i.text for i in said.take().items] == ["typed while it spoke"]
    said.audio(VOICE, True)
    said.reply_began()
    said.audio(QUIET, False)
    said.interrupted()  # the barge-in after the reply began is not answered yet
    taken = said.take()
    assert [i.pcm for i in taken.items] == [QUIET]
    assert taken.barge_in


# ---- D4: barge-in ----------------------------------------------------------------------------


def test_interrupted_then_a_separate_turn_complete_keeps_one_user_turn(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    relay.feed_audio(VOICE)
    relay.feed_audio(QUIET)
    push(relay, session, ServerMessage(input_transcription="Show me the chart."))
    push(relay, session, ServerMessage(audio=b"\0\0" * 240, output_transcription="The chart"))
    wait_until(lambda: len(relay.transcript) == 2)
    relay.feed_audio(VOICE)  # the user barges in
    wait_until(lambda: relay.conversation.core.floor.user_speaking)
    interrupted_usage = Usage(prompt_tokens=554, response_tokens=40, total_tokens=594)
    for step in (
        ServerMessage(interrupted=True),
        ServerMessage(input_transcription="Wait,"),
        ServerMessage(turn_complete=True, usage=interrupted_usage),  # R3: after interrupted
        ServerMessage(input_transcription=" what is that?"),
        ServerMessage(audio=b"\0\0" * 240, output_transcription="A bar chart."),
        ServerMessage(turn_complete=True, usage=Usage(prompt_tokens=700, total_tokens=720)),
    ):
        push(relay, session, step)
    wait_until(lambda: len(relay.usage) == 2 and relay.transcript[-1].done)
    turns = relay.transcript.snapshot()
    assert [(t.role, t.text.strip(), t.interrupted) for t in turns] == [
        ("user", "Show me the chart.", False),
        ("model", "The chart", True),
        ("user", "Wait, what is that?", False),
        ("model", "A bar chart.", False),
    ]
    assert relay.usage[0] == interrupted_usage  # the interrupted turn's usage counts
    completes = [e.detail["interrupted"] for e in relay.events if e.kind == "turn_complete"]
    assert completes == [True, False]


def test_the_turn_complete_of_an_interrupted_turn_leaves_the_barge_in_unanswered(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(audio=b"\0\0" * 240))
    push(relay, session, ServerMessage(interrupted=True))
    push(relay, session, ServerMessage(turn_complete=True))
    wait_until(lambda: any(e.kind == "turn_complete" for e in relay.events))
    assert relay.conversation.core.floor.awaiting_answer  # the barge-in's answer is still to come
    assert not relay.at_rest()


def test_interrupted_and_turn_complete_in_one_message_end_one_turn(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(input_transcription="Hello"))
    push(relay, session, ServerMessage(audio=b"\0\0" * 240, output_transcription="Hi"))
    push(relay, session, ServerMessage(interrupted=True, turn_complete=True))
    push(relay, session, ServerMessage(input_transcription="Stop"))
    wait_until(lambda: len(relay.transcript) == 3)
    assert relay.conversation.core.floor.awaiting_answer
    assert [t.text for t in relay.transcript] == ["Hello", "Hi", "Stop"]


# ---- D5: refused handles ---------------------------------------------------------------------


def _refusal(code: int, reason: str) -> LiveError:
    return LiveError(f"refused ({code})", code=code, reason=reason, fatal=code == 1007)


@timed(backoff_first_s=0.01)
def test_a_handle_refused_with_1011_gets_one_more_try_then_a_fresh_session(
    relay: Relay, backend: FakeBackend, sink: RecordingSink
) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(resumption_handle="old", resumable=True))
    refused = _refusal(1011, "Internal error encountered.")
    backend.fail_connects = [refused, refused]
    push(relay, session, LiveError("dropped", code=1006, fatal=False))
    live(relay, backend, count=2)
    assert [handle for _, handle in backend.configs] == [None, "old", "old", None]
    relay.feed_audio(QUIET)
    wait_until(lambda: relay.handovers)
    (handover,) = relay.handovers
    assert not handover.resumed
    assert "refused to resume (1011: Internal error encountered.)" in handover.reason


@timed(backoff_first_s=0.01)
def test_a_second_try_of_a_handle_can_succeed(relay: Relay, backend: FakeBackend) -> None:
    # The real service refuses a resume while the session's old socket is still open (R9).
    session = live(relay, backend)
    push(relay, session, ServerMessage(resumption_handle="old", resumable=True))
    backend.fail_connects = [_refusal(1011, "Internal error encountered.")]
    push(relay, session, ServerMessage(go_away_s=50.0))
    live(relay, backend, count=2)
    assert [handle for _, handle in backend.configs] == [None, "old", "old"]
    relay.feed_audio(QUIET)
    wait_until(lambda: relay.handovers)
    assert relay.handovers[0].resumed


def test_a_handle_the_service_calls_invalid_is_dropped_at_once(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(resumption_handle="old", resumable=True))
    backend.fail_connects = [_refusal(1008, "Session resumption handle is invalid or expired.")]
    push(relay, session, ServerMessage(go_away_s=50.0))
    live(relay, backend, count=2)
    assert [handle for _, handle in backend.configs] == [None, "old", None]


# ---- D8: user text after the model's reply ---------------------------------------------------


def test_user_words_that_arrive_after_the_answer_go_before_it(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    start_ms = time.time() * 1000 - 1000  # the page captured it over the last second
    for i, pcm in enumerate([VOICE] * 10 + [QUIET] * 15):
        relay.feed_audio(pcm, start_ms + 40 * (i + 1))  # dated by the page's clock
    floor = relay.conversation.core.floor
    wait_until(lambda: not floor.user_speaking and floor.last_voice_wall is not None)
    push(relay, session, ServerMessage(audio=b"\0\0" * 240, output_transcription="Sure."))
    push(relay, session, ServerMessage(turn_complete=True))
    push(relay, session, ServerMessage(input_transcription="Can you"))  # pipecat#1788
    push(relay, session, ServerMessage(input_transcription=" help?"))
    wait_until(lambda: len(relay.transcript) == 2 and relay.transcript[0].text == "Can you help?")
    user, model = relay.transcript.snapshot()
    assert (user.role, model.role) == ("user", "model")
    assert user.done and user.ended_at is not None and user.ended_at <= model.started_at


def test_a_bad_key_on_a_resume_fails_at_once(relay: Relay, backend: FakeBackend) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(resumption_handle="old", resumable=True))
    expired = LiveError(
        "The API key has expired.",
        code=1007,
        reason="API key expired. Please renew the API key.",
        fatal=True,
    )
    backend.fail_connects = [expired]
    push(relay, session, ServerMessage(go_away_s=50.0))
    wait_until(lambda: relay.state.value == "error")
    assert [handle for _, handle in backend.configs] == [None, "old"]
    assert relay.error == expired.message


# ---- what a handover must not break ----------------------------------------------------------


@timed(model_silent_s=0.2)
def test_an_ask_cut_by_a_silent_go_away_gets_the_whole_answer_from_the_next_connection(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    answer = relay.ask("What is on screen?", timeout=10)
    wait_until(lambda: session.texts)
    push(relay, session, ServerMessage(audio=b"\0\0" * 240, output_transcription="It shows"))
    push(relay, session, ServerMessage(go_away_s=50.0))  # and silence, mid-answer
    second = live(relay, backend, count=2)
    wait_until(lambda: second.texts == ["What is on screen?"])
    assert not answer.done()  # not the cut answer
    push(relay, second, ServerMessage(audio=b"\0\0" * 240, output_transcription="A chart."))
    push(relay, second, ServerMessage(turn_complete=True))
    assert answer.result(5) == "A chart."
    assert relay._sink.interrupts == [1]  # type: ignore[attr-defined]  # the cut one flushed


@timed(backoff_first_s=0.01)
def test_a_send_that_fails_during_the_replay_keeps_the_rest_for_the_next_connection(
    relay: Relay, backend: FakeBackend
) -> None:

    class BreaksOnThirdChunk(FakeSession):
        async def send_audio(self, pcm: bytes) -> None:
            if self.index == 1 and len(self.audio) == 2:
                raise LiveError("dropped", code=1006, fatal=False)
            await super().send_audio(pcm)

    backend.session_type = BreaksOnThirdChunk
    session = live(relay, backend)
    for _ in range(10):
        relay.feed_audio(VOICE)
    wait_until(lambda: len(session.audio) == 10)
    push(relay, session, ServerMessage(go_away_s=50.0))
    third = live(relay, backend, count=3)  # the second broke during the replay
    wait_until(lambda: len(third.audio) >= 10)
    assert third.audio[:10] == [VOICE] * 10  # all of the question, in order


def slow_tool(seconds: float) -> dict[str, float]:
    """Sleeps, then says how long."""
    time.sleep(seconds)
    return {"slept": seconds}


def test_a_go_away_waits_for_a_running_tool(sink: RecordingSink) -> None:
    from screenshare_widget import gemini
    from screenshare_widget.backend import ToolCall
    from screenshare_widget.config import SessionConfig
    from screenshare_widget.tools import Toolbox

    backend = FakeBackend()
    relay = Relay(
        backend.connect,
        SessionConfig(),
        sink,
        toolbox=Toolbox([slow_tool], declare=gemini.declare),
    )
    try:
        session = live(relay, backend)
        call = ToolCall(id="c1", name="slow_tool", args={"seconds": 1.0})
        push(relay, session, ServerMessage(tool_calls=(call,)))
        push(relay, session, ServerMessage(go_away_s=50.0))
        time.sleep(0.6)
        assert len(backend.sessions) == 1, "handed over while a tool ran"
        wait_until(lambda: session.tool_responses)  # answered on its own connection
        live(relay, backend, count=2)
        assert [t.outcome for t in relay.tool_calls] == ["ok"]
    finally:
        relay.close()


@timed(model_silent_s=0.2)
def test_at_rest_after_a_handover_that_followed_a_complete_generation(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    relay.feed_audio(VOICE)
    push(relay, session, ServerMessage(audio=b"\0\0" * 240, output_transcription="Yes."))
    push(relay, session, ServerMessage(generation_complete=True))
    push(relay, session, ServerMessage(go_away_s=50.0))
    live(relay, backend, count=2)
    wait_until(relay.at_rest, 3)
