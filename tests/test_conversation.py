"""The conversation core directly, on pytest-asyncio with a fake clock: no threads, no
fixed sleeps, no monkeypatched constants. Time moves only by ``clock.advance``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from screenshare_widget.backend import LiveError, ServerMessage
from screenshare_widget.config import SessionConfig
from screenshare_widget.conversation import Conversation, RelayState
from screenshare_widget.instructions import Instructions
from screenshare_widget.pumps import WaitingFrame
from screenshare_widget.timings import Timings
from screenshare_widget.tools import Toolbox

from .clock import FakeClock
from .fakes import FakeBackend, FakeSession, RecordingSink, closing_after

LOUD = b"\x00\x10" * 640  # 40 ms at about -18 dBFS: voice
QUIET = b"\x00\x00" * 640  # 40 ms of silence


def conversation(
    connect: object, sink: RecordingSink, clock: FakeClock, **timings: float
) -> Conversation:
    config = SessionConfig()
    return Conversation(
        connect,  # type: ignore[arg-type]
        lambda: (config, 1),
        sink,
        toolbox=Toolbox(),
        instructions=Instructions(config.system_instruction),
        timings=Timings(**timings),  # type: ignore[arg-type]
        clock=clock,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def conv(
    backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> AsyncIterator[Conversation]:
    """A conversation on the fake backend and the fake clock, stopped after the test."""
    c = conversation(backend.connect, sink, clock)
    yield c
    await c.stop()


async def live(
    conv: Conversation, backend: FakeBackend, clock: FakeClock, count: int = 1
) -> FakeSession:
    """Start (if needed) and let the loop run until the ``count``-th connection is live."""
    if conv.state is RelayState.IDLE:
        await conv.start()
    await clock.settle()
    assert len(backend.sessions) >= count and conv.state is RelayState.LIVE, conv.state
    return backend.sessions[count - 1]


async def test_states_idle_connecting_live_closing_idle(
    conv: Conversation, backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> None:
    await live(conv, backend, clock)
    await conv.stop()
    assert [s for s, _ in sink.states] == [
        RelayState.CONNECTING,
        RelayState.LIVE,
        RelayState.CLOSING,
        RelayState.IDLE,
    ]
    assert backend.sessions[0].closed


async def test_illegal_transition_raises(conv: Conversation) -> None:
    with pytest.raises(RuntimeError, match="cannot move from idle to live"):
        conv.set_state(RelayState.LIVE)


async def test_a_drop_reconnects_after_the_backoff_in_virtual_time(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    session = await live(conv, backend, clock)
    session.push(ServerMessage(resumption_handle="h-7", resumable=True))
    session.push(LiveError("dropped", code=1006, fatal=False))
    await clock.settle()
    assert conv.state is RelayState.RECONNECTING and len(backend.sessions) == 1
    await clock.advance(conv.timings.backoff_first_s)  # the first backoff is at most this
    await live(conv, backend, clock, count=2)
    assert backend.configs[-1][1] == "h-7"
    await conv.stop()


async def test_a_stalled_service_is_left_after_the_silence_limit(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    session = await live(conv, backend, clock)
    session.stalled = True
    await clock.advance(conv.timings.silence_limit_s - 1)
    assert len(backend.sessions) == 1 and conv.state is RelayState.LIVE
    await clock.advance(1 + conv.timings.backoff_first_s)
    await live(conv, backend, clock, count=2)
    assert conv.core.log.counters.reconnects == 1
    await conv.stop()


async def test_go_away_waits_for_a_pause_in_the_users_speech(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    session = await live(conv, backend, clock)
    conv.uplink.put_audio(LOUD)  # already talking when the goAway comes
    session.push(ServerMessage(go_away_s=30.0))
    await clock.settle()
    for _ in range(15):  # the user keeps talking for 0.6 s, paced like a microphone
        conv.uplink.put_audio(LOUD)
        await clock.advance(0.04)
        assert len(backend.sessions) == 1, "handed over while the user was talking"
    stopped_talking = clock.monotonic()
    session.push(ServerMessage(audio=b"\0\0", output_transcription="Yes."))
    session.push(ServerMessage(turn_complete=True))
    while len(backend.sessions) == 1:  # answered; the handover comes once the mic is quiet
        await clock.advance(conv.timings.handover_poll_s)
    await live(conv, backend, clock, count=2)
    assert clock.monotonic() - stopped_talking >= conv.timings.pause_s
    await conv.stop()


async def test_a_send_in_flight_at_a_handover_completes_and_counts(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    gate = asyncio.Event()

    class SlowSession(FakeSession):
        async def send_audio(self, pcm: bytes) -> None:
            await gate.wait()  # the send is under way when the handover comes
            self.audio.append(pcm)

    backend.session_type = SlowSession
    session = await live(conv, backend, clock)
    conv.uplink.put_audio(b"\x01\x00" * 8)
    session.push(ServerMessage(go_away_s=30.0))  # quiet, nothing pending: hand over
    await clock.settle()  # the handover began; the send is blocked
    assert len(backend.sessions) == 1
    gate.set()
    await clock.settle()
    await live(conv, backend, clock, count=2)
    assert conv.core.log.counters.audio_bytes_sent == 16
    assert session.audio == [b"\x01\x00" * 8]  # sent once, on the old connection
    assert backend.sessions[1].audio == []
    await conv.stop()


async def test_frames_latest_wins(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    session = await live(conv, backend, clock)
    for i in range(5):
        conv.uplink.put_frame(WaitingFrame(b"\xff\xd8\xff" + bytes([i]), 8, 4))
    await clock.settle()
    assert session.frames == [b"\xff\xd8\xff\x04"]
    assert conv.core.log.counters.superseded_frames == 4
    await conv.stop()


async def test_cancelling_a_stop_that_waits_for_the_close_propagates(
    backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> None:
    """Never swallow CancelledError: a stop waiting for a slow close that is itself
    cancelled ends cancelled, not as if the session had closed."""
    gate = asyncio.Event()
    conv = conversation(closing_after(backend, gate.wait), sink, clock)
    await live(conv, backend, clock)
    stopper = asyncio.create_task(conv.stop())
    await clock.settle()  # it waits for the session's task to end
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    gate.set()
    await clock.settle()
    assert conv.state is RelayState.IDLE


async def test_cancelling_a_start_that_waits_for_a_closing_session_propagates(
    backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> None:
    gate = asyncio.Event()
    conv = conversation(closing_after(backend, gate.wait), sink, clock)
    await live(conv, backend, clock)
    stopper = asyncio.create_task(conv.stop())
    await clock.settle()
    assert conv.state is RelayState.CLOSING
    starter = asyncio.create_task(conv.start())
    await clock.settle()  # it waits for the closing session
    starter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starter
    gate.set()
    await stopper
    assert conv.state is RelayState.IDLE  # the cancelled start opened nothing
    assert len(backend.sessions) == 1


async def reconnected(
    conv: Conversation, backend: FakeBackend, clock: FakeClock, count: int
) -> FakeSession:
    """Advance virtual time through backoffs until connection ``count`` is live."""
    for _ in range(100):
        if len(backend.sessions) >= count and conv.state is RelayState.LIVE:
            break
        await clock.advance(conv.timings.backoff_max_s / 4)
    return await live(conv, backend, clock, count)


async def test_drop_reconnects_with_the_latest_resumable_handle(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    session = await live(conv, backend, clock)
    session.push(ServerMessage(resumption_handle="h-7", resumable=True))
    session.push(ServerMessage(resumable=False))
    session.push(LiveError("dropped", code=1006, fatal=False))
    second = await reconnected(conv, backend, clock, 2)
    assert backend.configs[-1][1] == "h-7"
    assert conv.core.log.counters.reconnects == 1
    conv.uplink.put_audio(b"\0\0" * 8)
    await clock.settle()
    assert second.audio


async def test_gives_up_after_the_reconnect_budget(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    err = LiveError("The Live service closed the connection (1011: x).", code=1011, fatal=False)
    budget = conv.timings.max_reconnects
    backend.fail_connects = [err] * (budget + 1)
    await conv.start()
    for _ in range(200):
        if conv.state is RelayState.FAILED:
            break
        await clock.advance(conv.timings.backoff_max_s / 4)
    assert conv.state is RelayState.FAILED
    assert len(backend.configs) == budget + 1
    assert "gave up after" in conv.error


async def test_go_away_hands_over_before_the_deadline_mid_turn(
    backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> None:
    conv = conversation(backend.connect, sink, clock, goaway_margin_s=0.0)
    session = await live(conv, backend, clock)
    session.push(ServerMessage(audio=b"\0\0"))
    session.push(ServerMessage(go_away_s=0.2))
    await clock.advance(0.1)
    assert len(backend.sessions) == 1  # the model still speaks: not yet
    await clock.advance(0.1 + conv.timings.handover_poll_s)
    await live(conv, backend, clock, count=2)
    await conv.stop()


async def test_ticks_while_running(
    conv: Conversation, backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> None:
    await live(conv, backend, clock)
    await clock.advance(2 * conv.timings.ack_interval_s)
    assert sink.ticks == 2


async def test_handovers_are_recorded_with_reason_resumption_and_gap(
    conv: Conversation, backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> None:
    session = await live(conv, backend, clock)
    session.push(ServerMessage(resumption_handle="h-1", resumable=True))
    conv.uplink.put_audio(b"\0\0" * 640)
    await clock.settle()
    assert session.audio
    sent_at = clock.monotonic()
    session.push(LiveError("x", code=1011, reason="Internal error occurred.", fatal=False))
    second = await reconnected(conv, backend, clock, 2)
    conv.uplink.put_audio(b"\0\0" * 640)
    await clock.settle()
    assert second.audio
    (handover,) = conv.core.log.handovers
    assert handover.reason == "1011: Internal error occurred."
    assert handover.resumed
    assert handover.gap_ms == pytest.approx((clock.monotonic() - sent_at) * 1000)
    assert 0 < handover.gap_ms < 5_000
    assert sink.handovers == [handover]


async def test_a_refused_handle_gets_one_fresh_retry(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    session = await live(conv, backend, clock)
    session.push(ServerMessage(resumption_handle="old", resumable=True))
    refused = LiveError(
        "refused", code=1008, reason="Session resumption handle is invalid or expired.", fatal=False
    )
    backend.fail_connects = [refused]
    session.push(LiveError("dropped", code=1006, fatal=False))
    await reconnected(conv, backend, clock, 2)
    assert [handle for _, handle in backend.configs] == [None, "old", None]
    conv.uplink.put_audio(b"\0\0" * 8)
    await clock.settle()
    assert conv.core.log.handovers[0].resumed is False


async def test_a_chunk_whose_send_failed_goes_first_on_the_next_connection(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    failing = {"left": 1}

    class BrokenOnce(FakeSession):
        async def send_audio(self, pcm: bytes) -> None:
            if failing["left"]:
                failing["left"] -= 1
                raise LiveError("dropped", code=1006, fatal=False)
            self.audio.append(pcm)

    backend.session_type = BrokenOnce
    await live(conv, backend, clock)
    conv.uplink.put_audio(b"\x07\x00" * 4)
    second = await reconnected(conv, backend, clock, 2)
    await clock.settle()
    assert second.audio == [b"\x07\x00" * 4]
    assert conv.core.log.counters.audio_bytes_sent == 8


@pytest.mark.parametrize("fatal", [False, True], ids=["drop", "fatal"])
async def test_a_drop_and_a_stop_in_the_same_tick_end_idle_and_it_starts_again(
    conv: Conversation, backend: FakeBackend, sink: RecordingSink, clock: FakeClock, fatal: bool
) -> None:
    """Python 3.11's TaskGroup gives a child's error priority over the parent's
    cancellation: a connection that ends as the user stops must still end in IDLE (not
    reconnect, not stay CLOSING), and the next start must work."""
    session = await live(conv, backend, clock)
    session.push(LiveError("dropped", code=1006, fatal=fatal))
    await conv.stop()  # the same tick: the error reaches the group as stop() cancels
    assert conv.state is RelayState.IDLE, conv.state
    assert [s for s, _ in sink.states][-2:] == [RelayState.CLOSING, RelayState.IDLE]
    await clock.advance(conv.timings.backoff_max_s)  # no reconnect is scheduled
    assert len(backend.sessions) == 1 and conv.state is RelayState.IDLE
    await live(conv, backend, clock, count=2)


async def test_a_ping_that_fails_is_logged(
    conv: Conversation, backend: FakeBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenPing(FakeSession):
        async def ping(self) -> None:
            raise KeyError("a bug in the adapter's ping")

    backend.session_type = BrokenPing
    await live(conv, backend, clock)
    await clock.settle()
    failed = [r for r in caplog.records if "relay.ping" in r.getMessage()]
    assert failed and failed[0].exc_info is not None
    assert isinstance(failed[0].exc_info[1], KeyError)
    assert conv.state is RelayState.LIVE  # a broken ping is logged, not a reason to drop


async def test_an_ask_times_out_on_the_conversations_clock(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    """The answer's wait is measured on the injected clock: a minute of virtual time, no
    real wait."""
    session = await live(conv, backend, clock)
    asking = asyncio.create_task(conv.ask("anyone?", 60.0))
    await clock.advance(59.0)
    assert not asking.done() and conv.core.waiters
    await clock.advance(1.5)
    with pytest.raises(TimeoutError, match="did not answer within 60 s"):
        await asking
    assert conv.core.waiters == []
    assert session.texts == ["anyone?"]


async def test_an_answer_within_the_limit_is_returned_and_a_cancelled_ask_leaves_nothing(
    conv: Conversation, backend: FakeBackend, clock: FakeClock
) -> None:
    session = await live(conv, backend, clock)
    sleeping = clock.sleepers  # the relay's own timers
    asking = asyncio.create_task(conv.ask("what is 2 + 2?", 60.0))
    await clock.advance(30.0)
    assert clock.sleepers == sleeping + 1  # and the ask's expiry
    session.push(ServerMessage(audio=b"\x00\x01" * 240, output_transcription="Four."))
    session.push(ServerMessage(turn_complete=True))
    await clock.advance(1.0)
    assert await asking == "Four."
    assert clock.sleepers == sleeping  # the ask's expiry went with it

    cancelled = asyncio.create_task(conv.ask("and 3 + 3?", 60.0))
    await clock.settle()
    waiter = conv.core.waiters[0]
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert conv.core.waiters == [] and waiter.future.cancelled()
    await clock.advance(61.0)  # its expiry was cancelled with it: nothing fires
    assert session.texts == ["what is 2 + 2?", "and 3 + 3?"]
