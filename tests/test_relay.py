"""The relay against a scripted fake session, through its thread-safe facade: every server
field, interruption, bounded buffers, reconnects. The state machine, handover timing and
sends in flight run on a fake clock in test_conversation.py."""

from __future__ import annotations

import time

import pytest

from screenshare_widget import timings as timing
from screenshare_widget.backend import LiveError, ServerMessage, ToolCall, Usage
from screenshare_widget.config import SessionConfig
from screenshare_widget.relay import Relay, RelayState

from .conftest import wait_until
from .fakes import live, push, timed


def test_start_and_stop_are_idempotent(relay: Relay, backend) -> None:
    relay.stop()  # nothing running: no error
    live(relay, backend)
    relay.start()
    relay.start()
    wait_until(lambda: relay.counters.connections == 1)
    assert len(backend.sessions) == 1
    relay.stop()
    relay.stop()
    assert relay.state is RelayState.IDLE


def test_restart_after_stop_keeps_transcript(relay: Relay, backend) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(input_transcription="hello"))
    wait_until(lambda: len(relay.transcript) == 1)
    relay.stop()
    live(relay, backend, count=2)
    assert [t.text for t in relay.transcript] == ["hello"]


def test_a_session_after_a_stop_starts_fresh(relay: Relay, backend) -> None:
    """Stop ends the conversation for the model too: the next session does not resume the
    stopped one's context (a handover within a session does)."""
    session = live(relay, backend)
    push(relay, session, ServerMessage(resumption_handle="handle-1"))
    wait_until(lambda: relay.conversation.core.handle == "handle-1")
    relay.stop()
    live(relay, backend, count=2)
    assert [handle for _, handle in backend.configs] == [None, None]


def test_audio_and_frames_are_relayed_in_order(relay: Relay, backend) -> None:
    session = live(relay, backend)
    chunks = [bytes([i]) * 1280 for i in range(10)]
    for chunk in chunks:
        relay.feed_audio(chunk)
    relay.feed_frame(b"\xff\xd8\xff frame")
    wait_until(lambda: len(session.audio) == 10 and len(session.frames) == 1)
    assert session.audio == chunks
    assert relay.counters.audio_bytes_sent == 12800
    assert relay.counters.dropped_audio_bytes == 0


def test_mic_buffer_drops_oldest_past_one_second(backend, sink) -> None:
    # Hold the connection attempt so audio piles up in the buffer while connecting.
    backend.fail_connects = []
    relay = Relay(backend.connect, SessionConfig(), sink)
    try:
        relay.start()
        wait_until(lambda: relay.state is RelayState.LIVE)
        # Block the sender by feeding from inside the loop faster than it can run.
        chunk = b"\x01\x00" * 640  # 40 ms
        n = 60  # 2.4 s of audio in one go

        async def flood() -> None:
            for i in range(n):
                relay.conversation.uplink.put_audio(bytes([i % 256]) * len(chunk))

        relay.run_coroutine(flood()).result(2)
        session = backend.sessions[0]
        wait_until(
            lambda: (
                relay.counters.audio_bytes_sent + relay.counters.dropped_audio_bytes
                == n * len(chunk)
            )
        )
        kept = relay.counters.audio_bytes_sent
        assert kept <= timing.MIC_BUFFER_BYTES
        assert relay.counters.dropped_audio_bytes == n * len(chunk) - kept
        # The newest audio survives (drop-oldest).
        assert session.audio[-1] == bytes([(n - 1) % 256]) * len(chunk)
    finally:
        relay.close()


def test_media_before_start_is_not_buffered(relay: Relay, backend) -> None:
    relay.feed_audio(b"\x00\x00" * 640)  # no loop yet: dropped without error
    session = live(relay, backend)
    assert session.audio == []


def test_every_field_of_one_message_is_handled(relay: Relay, backend, sink) -> None:
    session = live(relay, backend)
    usage = Usage(
        prompt_tokens=10, response_tokens=5, total_tokens=15, by_modality={"prompt:AUDIO": 10}
    )
    push(
        relay,
        session,
        ServerMessage(
            audio=b"\x01\x00" * 100,
            input_transcription="What is this?",
            output_transcription="A chart.",
            generation_complete=True,
            turn_complete=True,
            usage=usage,
            resumption_handle="h-1",
            resumable=True,
        ),
    )
    wait_until(lambda: sink.completes)
    assert sink.audio == [(b"\x01\x00" * 100, 0)]
    assert [(t.role, t.text) for t in relay.transcript] == [
        ("user", "What is this?"),
        ("model", "A chart."),
    ]
    assert all(t.done for t in relay.transcript)
    assert sink.usage == [usage] and relay.usage == [usage]
    assert relay.conversation.core.handle == "h-1"


def test_partial_transcriptions_merge_into_turns(relay: Relay, backend) -> None:
    session = live(relay, backend)
    for step in (
        ServerMessage(input_transcription="What"),
        ServerMessage(input_transcription=" is on"),
        ServerMessage(audio=b"\0\0"),
        ServerMessage(input_transcription=" my screen?"),  # late piece of the user's words
        ServerMessage(output_transcription="A notebook"),
        ServerMessage(output_transcription=" with a chart."),
        ServerMessage(turn_complete=True),
        ServerMessage(input_transcription="Thanks"),
    ):
        push(relay, session, step)
    wait_until(lambda: len(relay.transcript) == 3)
    turns = relay.transcript.snapshot()
    assert [(t.role, t.text) for t in turns] == [
        ("user", "What is on my screen?"),
        ("model", "A notebook with a chart."),
        ("user", "Thanks"),
    ]
    assert turns[0].done and turns[1].done and not turns[2].done


def test_interruption_flushes_and_bumps_generation(relay: Relay, backend, sink) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(input_transcription="Tell me"))
    push(relay, session, ServerMessage(audio=b"\1\0" * 10, output_transcription="Well, first"))
    push(relay, session, ServerMessage(interrupted=True))
    push(relay, session, ServerMessage(audio=b"\2\0" * 10, output_transcription="Sure."))
    wait_until(lambda: len(sink.audio) == 2)
    assert sink.interrupts == [1]
    assert [gen for _, gen in sink.audio] == [0, 1]
    turns = relay.transcript.snapshot()
    assert [(t.role, t.interrupted) for t in turns] == [
        ("user", False),
        ("model", True),
        ("model", False),
    ]
    assert turns[1].text == "Well, first"


def test_tool_calls_without_tools_do_not_break_the_session(relay: Relay, backend) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(tool_calls=(ToolCall("c1", "lookup", {}),)))
    push(relay, session, ServerMessage(output_transcription="ok", turn_complete=True))
    wait_until(lambda: len(relay.transcript) == 1)
    assert relay.state is RelayState.LIVE


def test_fatal_error_fails_without_retry(relay: Relay, backend, sink) -> None:
    backend.fail_connects = [
        LiveError("API key not valid: set GEMINI_API_KEY or pass client=.", code=1007, fatal=True)
    ]
    relay.start()
    wait_until(lambda: relay.state is RelayState.FAILED)
    assert relay.error.startswith("API key not valid")
    assert len(backend.configs) == 1
    assert sink.states[-1] == (RelayState.FAILED, relay.error)


def test_go_away_hands_over_at_turn_boundary(relay: Relay, backend, sink) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(resumption_handle="h-1", resumable=True))
    push(relay, session, ServerMessage(audio=b"\0\0", output_transcription="Hi"))
    push(relay, session, ServerMessage(go_away_s=30.0))
    wait_until(lambda: relay.transcript and relay.transcript[0].text == "Hi")
    assert len(backend.sessions) == 1  # still speaking: no handover yet
    push(relay, session, ServerMessage(turn_complete=True))
    live(relay, backend, count=2)
    assert backend.configs[-1][1] == "h-1"
    assert RelayState.RECONNECTING in [s for s, _ in sink.states]


def test_unexpected_bug_fails_visibly(backend, sink) -> None:
    relay = Relay(backend.connect, SessionConfig(), sink)
    try:
        session = live(relay, backend)
        # A malformed message object (not a ServerMessage) hits a bug path in the handler.
        push(relay, session, object())  # type: ignore[arg-type]
        wait_until(lambda: relay.state is RelayState.FAILED)
        assert "unexpectedly" in relay.error
    finally:
        relay.close()


def test_generation_complete_tells_the_page_that_audio_ended(relay: Relay, backend, sink) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(audio=b"\0\0", output_transcription="Hi"))
    push(relay, session, ServerMessage(generation_complete=True))
    wait_until(lambda: sink.completes == [0])
    assert not relay.transcript[0].done  # the turn itself is still open until turnComplete
    push(relay, session, ServerMessage(turn_complete=True))
    wait_until(lambda: sink.completes == [0, 0])
    assert relay.transcript[0].done


def test_a_refused_handle_then_a_fatal_fresh_attempt_fails(relay: Relay, backend) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(resumption_handle="old", resumable=True))
    bad_key = LiveError(
        "API key not valid: set GEMINI_API_KEY or pass client=.", code=1007, fatal=True
    )
    backend.fail_connects = [
        LiveError("refused", code=1008, reason="handle expired", fatal=True),
        bad_key,
    ]
    push(relay, session, ServerMessage(go_away_s=10.0))
    wait_until(lambda: relay.state is RelayState.FAILED)
    assert relay.error == bad_key.message
    assert [handle for _, handle in backend.configs] == [None, "old", None]


@timed(backoff_first_s=0.01)
def test_a_drop_mid_answer_cuts_the_model_turn_but_not_between_turns(relay: Relay, backend) -> None:
    session = live(relay, backend)
    push(relay, session, ServerMessage(input_transcription="Tell me about"))
    push(relay, session, ServerMessage(resumption_handle="h", resumable=True))
    push(relay, session, ServerMessage(go_away_s=30.0))  # not speaking: hands over right away
    second = live(relay, backend, count=2)
    push(relay, second, ServerMessage(input_transcription=" this chart"))
    push(relay, second, ServerMessage(audio=b"\0\0", output_transcription="It shows"))
    push(relay, second, LiveError("dropped", code=1006, fatal=False))
    live(relay, backend, count=3)
    turns = relay.transcript.snapshot()
    assert [(t.role, t.text, t.interrupted) for t in turns] == [
        ("user", "Tell me about this chart", False),
        ("model", "It shows", True),
    ]


def test_protocol_events_are_recorded(relay: Relay, backend) -> None:
    session = live(relay, backend)
    relay.feed_audio(b"\x00\x10" * 640)  # voice
    relay.feed_frame(b"\xff\xd8\xff" + bytes(10), 1024, 576, seq=4, reason="speech")
    wait_until(lambda: session.frames)
    push(relay, session, ServerMessage(audio=b"\0\0", output_transcription="Hi"))
    push(relay, session, ServerMessage(interrupted=True))
    push(relay, session, ServerMessage(tool_calls=(ToolCall("c1", "f", {}),)))
    push(relay, session, ServerMessage(turn_complete=True, usage=Usage(1, 2, 3)))
    wait_until(lambda: any(e.kind == "usage" for e in relay.events))
    kinds = [e.kind for e in relay.events]
    for kind in ("speech_start", "frame_sent", "first_audio", "interrupted", "tool_call",
                 "turn_complete", "usage"):  # fmt: skip
        assert kind in kinds, kinds
    sent = relay.frames[0]
    assert (sent.width, sent.height, len(sent.jpeg)) == (1024, 576, 13)
    frame_event = next(e for e in relay.events if e.kind == "frame_sent")
    assert dict(frame_event.detail) == {
        "width": 1024, "height": 576, "bytes": 13, "reason": "speech"
    }  # fmt: skip
    assert sent.reason == "speech"


def test_user_turns_are_dated_by_when_the_page_captured_the_speech(relay: Relay, backend) -> None:
    """The page stamps each chunk with its capture time; the speech events and the user's turn
    carry it, however late the chunks or the transcription reach the kernel."""
    session = live(relay, backend)
    chunk_s = 0.1
    voiced = (b"\x00\x40" * 1600, True)  # 100 ms at about -6 dBFS
    quiet = (b"\x00\x00" * 1600, False)
    spoke_at = time.time() - 3.0  # the page captured this 3 s ago (a slow uplink, say)
    script = [voiced] * 10 + [quiet] * 8
    for i, (pcm, _) in enumerate(script):
        relay.feed_audio(pcm, (spoke_at + (i + 1) * chunk_s) * 1000)
    wait_until(lambda: any(e.kind == "speech_end" for e in relay.events))
    start = next(e for e in relay.events if e.kind == "speech_start")
    end = next(e for e in relay.events if e.kind == "speech_end")
    assert start.at.timestamp() == pytest.approx(spoke_at, abs=0.01)
    assert end.at.timestamp() == pytest.approx(spoke_at + 1.0, abs=0.01)
    push(relay, session, ServerMessage(input_transcription="What is this?"))
    push(relay, session, ServerMessage(output_transcription="A chart.", turn_complete=True))
    wait_until(lambda: len(relay.transcript) == 2 and relay.transcript[0].done)
    user = relay.transcript[0]
    assert user.started_at == start.at and user.ended_at == end.at
    assert (user.ended_at - user.started_at).total_seconds() == pytest.approx(1.0, abs=0.01)


def test_a_skewed_page_clock_is_corrected(relay: Relay, backend) -> None:
    """A browser whose clock is an hour ahead: its times are moved by the offset, the same
    for every chunk, so a backlog that arrives late keeps its spacing."""
    live(relay, backend)
    ahead = 3600.0
    relay.feed_audio(b"\x00\x00" * 1600, (time.time() + ahead) * 1000)  # on time, quiet
    wait_until(lambda: relay.counters.audio_chunks_in == 1)
    spoke_at = time.time() - 2.0
    for i in range(12):  # 0.6 s of voice, then 0.6 s of quiet, all arriving at once, 2 s late
        pcm = b"\x00\x40" * 1600 if i < 6 else b"\x00\x00" * 1600
        relay.feed_audio(pcm, (spoke_at + ahead + (i + 1) * 0.1) * 1000)
    wait_until(lambda: any(e.kind == "speech_end" for e in relay.events))
    start = next(e for e in relay.events if e.kind == "speech_start")
    end = next(e for e in relay.events if e.kind == "speech_end")
    assert abs(start.at.timestamp() - spoke_at) < 2.5  # near the kernel's clock, not an hour off
    assert (end.at - start.at).total_seconds() == pytest.approx(0.6, abs=0.01)


def test_speech_cut_by_a_stop_does_not_date_the_next_session(relay: Relay, backend) -> None:
    live(relay, backend)
    # "bye", said a second ago by the page's clock, then Stop before its transcription.
    relay.feed_audio(b"\x00\x40" * 1600, (time.time() - 1.0) * 1000)
    wait_until(lambda: any(e.kind == "speech_start" for e in relay.events))
    relay.stop()
    assert [e.kind for e in relay.events if e.kind.startswith("speech")] == [
        "speech_start",
        "speech_end",
    ]
    session = live(relay, backend, count=2)
    began = time.time()  # a second after the last speech: dating by it would be early
    relay.feed_audio(b"\x00\x40" * 1600)
    wait_until(lambda: sum(e.kind == "speech_start" for e in relay.events) == 2)
    push(relay, session, ServerMessage(input_transcription="Hello again"))
    wait_until(lambda: len(relay.transcript) == 1)
    assert relay.transcript[0].started_at.timestamp() >= began - 0.2
