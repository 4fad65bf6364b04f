"""The relay's prototyping features against a scripted fake session: instruction hot swap
(context update or handover), typed text with say and ask."""

from __future__ import annotations

import dataclasses
import time

import pytest

from screenshare_widget.backend import ServerMessage
from screenshare_widget.relay import INSTRUCTION_HANDOVER, Relay, RelayState, SessionEnded

from .conftest import wait_until
from .fakes import FakeBackend, FakeSession, RecordingSink, live, push, timed
from .media import tone_pcm

#: A model without mid-session context updates: a new instruction needs a handover.
NO_CONTEXT_UPDATE = "gemini-3.1-flash-live-preview"


def answer(relay: Relay, session: FakeSession, text: str) -> None:
    """The model speaks ``text`` and completes its turn."""
    push(relay, session, ServerMessage(audio=b"\x00\x01" * 240, output_transcription=text))
    push(relay, session, ServerMessage(turn_complete=True))


def test_new_instruction_goes_by_context_update_on_the_same_connection(
    relay: Relay, backend: FakeBackend, sink: RecordingSink
) -> None:
    session = live(relay, backend)
    assert relay.instructions.current.applied_by == "setup"
    answer(relay, session, "Under one.")
    wait_until(lambda: len(relay.transcript) == 1 and relay.transcript[0].done)

    version = relay.set_instruction('Start every answer with "Two:"')
    assert version.version == 2
    wait_until(lambda: session.instructions == ['Start every answer with "Two:"'])
    wait_until(lambda: not relay.instructions.current.pending)
    assert relay.instructions.current.applied_by == "context_update"
    assert [i.version for i in sink.instructions] == [1, 2]
    assert len(backend.sessions) == 1 and relay.handovers == []
    assert relay.config.system_instruction.startswith("Start every")

    answer(relay, session, "Two: under two.")
    wait_until(lambda: len(relay.transcript) == 2 and relay.transcript[1].done)
    assert [(t.text, t.instruction) for t in relay.transcript] == [
        ("Under one.", 1),
        ("Two: under two.", 2),
    ]
    kinds = [(e.kind, e.detail.get("version")) for e in relay.events if e.kind == "instruction"]
    assert kinds == [("instruction", 1), ("instruction", 2)]


def test_without_context_update_a_handover_applies_it_at_the_next_pause(
    relay: Relay, backend: FakeBackend
) -> None:
    relay.config = dataclasses.replace(relay.config, model=NO_CONTEXT_UPDATE)
    first = live(relay, backend)
    push(relay, first, ServerMessage(resumption_handle="handle-1", resumable=True))
    # The model is mid-answer: the handover waits for the end of its turn.
    push(relay, first, ServerMessage(audio=b"\x00\x01" * 240, output_transcription="Old"))
    wait_until(lambda: len(relay.transcript) == 1)
    relay.set_instruction("be terse")
    wait_until(lambda: relay.conversation.core.handle == "handle-1")
    assert len(backend.sessions) == 1 and relay.instructions.current.pending
    assert first.instructions == []  # never a context update on this model

    push(relay, first, ServerMessage(output_transcription=" answer.", turn_complete=True))
    second = live(relay, backend, count=2)
    config, handle = backend.configs[-1]
    assert (config.system_instruction, handle) == ("be terse", "handle-1")
    assert first.closed
    current = relay.instructions.current
    assert (current.version, current.applied_by) == (2, "handover")
    assert relay.transcript[0].text == "Old answer." and relay.transcript[0].done

    # The conversation goes on: a text reaches the new connection.
    relay.say("still there?").result(5)
    wait_until(lambda: second.texts == ["still there?"])
    wait_until(lambda: len(relay.handovers) == 1)
    assert relay.handovers[0].reason == INSTRUCTION_HANDOVER and relay.handovers[0].resumed


def test_a_new_instruction_while_idle_is_used_by_the_next_connection(
    relay: Relay, backend: FakeBackend
) -> None:
    relay.set_instruction("from the start")
    assert relay.instructions.current.pending
    session = live(relay, backend)
    assert backend.configs[0][0].system_instruction == "from the start"
    assert session.instructions == []  # it came with the setup: nothing more to send
    assert relay.instructions.current.applied_by == "setup"
    assert relay.transcript.instruction == 2


def test_say_starts_a_session_and_sends_the_text_as_a_typed_turn(
    relay: Relay, backend: FakeBackend
) -> None:
    relay.say("hello there").result(5)
    wait_until(lambda: backend.sessions and backend.sessions[0].texts == ["hello there"])
    assert relay.state is RelayState.LIVE
    turn = relay.transcript[0]
    assert (turn.role, turn.text, turn.typed, turn.done) == ("user", "hello there", True, True)
    wait_until(lambda: any(e.kind == "text" for e in relay.events))
    sent = next(e for e in relay.events if e.kind == "text")
    assert sent.detail["text"] == "hello there" and sent.detail["chars"] == 11


@pytest.mark.parametrize(("text", "error"), [("", ValueError), ("  ", ValueError), (3, TypeError)])
def test_say_refuses_what_is_not_text(relay: Relay, text: object, error: type) -> None:
    with pytest.raises(error):
        relay.say(text)  # type: ignore[arg-type]
    with pytest.raises(error):
        relay.ask(text)  # type: ignore[arg-type]


def test_ask_returns_the_answer_to_the_text_not_the_turn_already_playing(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    # The model is answering something spoken when the question is typed.
    push(relay, session, ServerMessage(audio=b"\x00\x01" * 240, output_transcription="Earlier"))
    wait_until(lambda: len(relay.transcript) == 1)
    reply = relay.ask("What is 2 + 2?")
    wait_until(lambda: session.texts == ["What is 2 + 2?"])
    push(relay, session, ServerMessage(output_transcription=" answer.", turn_complete=True))
    wait_until(lambda: relay.transcript[0].done)
    assert not reply.done()
    answer(relay, session, "It is four.")
    assert reply.result(5) == "It is four."
    roles = [(t.role, t.text.strip(), t.typed) for t in relay.transcript]
    assert roles == [
        ("model", "Earlier answer.", False),
        ("user", "What is 2 + 2?", True),
        ("model", "It is four.", False),
    ]


def test_ask_gets_what_was_said_when_the_answer_is_interrupted(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    reply = relay.ask("Tell me a long story")
    wait_until(lambda: session.texts)
    push(relay, session, ServerMessage(audio=b"\x00\x01" * 240, output_transcription="Once"))
    push(relay, session, ServerMessage(interrupted=True))
    assert reply.result(5) == "Once"


def test_ask_times_out_and_fails_when_the_session_stops(relay: Relay, backend: FakeBackend) -> None:
    live(relay, backend)
    with pytest.raises(TimeoutError, match="did not answer within 0.2 s"):
        relay.ask("anyone?", timeout=0.2).result(5)
    pending = relay.ask("still anyone?")
    wait_until(lambda: len(backend.sessions[0].texts) == 2)
    relay.stop()
    with pytest.raises(SessionEnded, match="stopped before the model answered"):
        pending.result(5)
    assert relay.conversation.core.waiters == []


def test_speech_end_is_dated_at_the_last_voice(relay: Relay, backend: FakeBackend) -> None:
    live(relay, backend)
    began = time.time() * 1000
    relay.feed_audio(tone_pcm(0.04), began)
    relay.feed_audio(bytes(1280), began + 800)  # the quiet is noticed 0.8 s later
    wait_until(lambda: any(e.kind == "speech_end" for e in relay.events))
    start = next(e for e in relay.events if e.kind == "speech_start")
    end = next(e for e in relay.events if e.kind == "speech_end")
    assert 0 <= (end.at - start.at).total_seconds() < 0.3


def test_end_audio_ends_the_utterance_and_tells_the_service(
    relay: Relay, backend: FakeBackend
) -> None:
    session = live(relay, backend)
    relay.feed_audio(tone_pcm(0.04))
    relay.end_audio().result(5)
    assert [e.kind for e in relay.events if e.kind.startswith("speech")] == [
        "speech_start",
        "speech_end",
    ]
    assert session.audio_ended == 1


@timed(instruction_wait_s=0.5)
def test_an_unanswered_question_holds_the_swap_only_so_long(
    relay: Relay, backend: FakeBackend
) -> None:
    relay.config = dataclasses.replace(relay.config, model=NO_CONTEXT_UPDATE)
    live(relay, backend)
    relay.feed_audio(tone_pcm(0.04))  # the user spoke; the model never answers
    wait_until(lambda: relay.conversation.core.floor.awaiting_answer)
    started = time.monotonic()
    relay.set_instruction("new rule")
    live(relay, backend, count=2)
    assert time.monotonic() - started >= 0.45  # it waited for an answer first
    assert backend.configs[-1][0].system_instruction == "new rule"
