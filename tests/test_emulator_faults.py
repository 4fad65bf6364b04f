"""The emulator's lifetimes, sessions and faults against the real google-genai SDK over TLS.

Lifetimes are shortened to seconds; every timing assertion allows 0.3 s of scheduling slack.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google.genai import errors, types

from screenshare_widget.emulator import (
    DefaultResponder,
    EmulatorConnection,
    Fault,
    Lifetimes,
)
from screenshare_widget.emulator.sessions import (
    MAX_HANDLES_PER_SESSION,
    REASON_AV_LIMIT,
    REASON_BAD_HANDLE,
    REASON_LIFETIME,
)

from .test_emulator import CONFIG, MODEL, client_for, fake_jpeg, idle, running

pytestmark = pytest.mark.timeout(30)

RESUME: dict[str, Any] = {**CONFIG, "session_resumption": {}}
#: Scheduling slack allowed on every timing assertion (seconds).
SLACK_S = 0.3
Timed = tuple[float, types.LiveServerMessage]


def quick_responder(**kwargs: Any) -> DefaultResponder:
    """A tone responder that sends all reply audio and transcription at once by default."""
    return DefaultResponder(use_espeak=False, **{"burst_ms": 60_000, **kwargs})


@asynccontextmanager
async def live(client: Any, config: dict[str, Any]) -> AsyncIterator[Any]:
    """``connect()`` that keeps receiving while it closes.

    A websockets client stops reading once 16 messages wait unread, so the server's close
    reply would queue behind unread reply audio until the 10 s close timeout.
    """
    drain: asyncio.Task[None] | None = None
    try:
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            try:
                yield session
            finally:
                drain = asyncio.create_task(_drain(session), name="drain")
    finally:
        if drain is not None:
            drain.cancel()
            await asyncio.wait([drain])


async def _drain(session: Any) -> None:
    try:
        await collect(session, [])
    except errors.APIError:
        pass


async def collect(session: Any, into: list[Timed]) -> None:
    """Append every message with its arrival time (``time.monotonic()``) until an error."""
    while True:
        async for msg in session.receive():
            into.append((time.monotonic(), msg))


async def wait_for(
    got: list[Timed], done: Callable[[float, types.LiveServerMessage], bool], limit_s: float = 5.0
) -> Timed:
    """The first collected ``(time, message)`` for which ``done`` holds, within ``limit_s``."""
    async with asyncio.timeout(limit_s):
        while True:
            for item in got:
                if done(*item):
                    return item
            await asyncio.sleep(0.01)


async def receive_until(
    session: Any, done: Callable[[types.LiveServerMessage], bool], limit_s: float = 5.0
) -> list[types.LiveServerMessage]:
    got: list[types.LiveServerMessage] = []
    async with asyncio.timeout(limit_s):
        while True:
            async for msg in session.receive():
                got.append(msg)
                if done(msg):
                    return got


async def ended_by(session: Any, limit_s: float = 5.0) -> tuple[float, errors.APIError]:
    """Receive until the connection ends; when (monotonic) and the SDK's error."""
    got: list[Timed] = []
    with pytest.raises(errors.APIError) as info:
        async with asyncio.timeout(limit_s):
            await collect(session, got)
    return time.monotonic(), info.value


def handle_of(msg: types.LiveServerMessage) -> str | None:
    update = msg.session_resumption_update
    return update.new_handle if update is not None and update.resumable else None


async def next_handle(session: Any) -> str:
    """The next resumable handle the connection receives."""
    handle = handle_of((await receive_until(session, lambda m: bool(handle_of(m))))[-1])
    assert handle is not None
    return handle


def said(messages: list[types.LiveServerMessage]) -> str:
    return "".join(
        m.server_content.output_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )


def frames_said(msg: types.LiveServerMessage) -> bool:
    content = msg.server_content
    text = content.output_transcription.text if content and content.output_transcription else ""
    return "screen frame" in (text or "")


async def send_frames(session: Any, count: int) -> None:
    for _ in range(count):
        await session.send_realtime_input(
            video=types.Blob(data=fake_jpeg(640, 360, 3000), mime_type="image/jpeg")
        )


async def send_audio_and_frame(session: Any) -> None:
    await session.send_realtime_input(
        audio=types.Blob(data=b"\x00\x00" * 1600, mime_type="audio/pcm;rate=16000")
    )
    await send_frames(session, 1)


def parse_duration(text: str | None) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", text or "")
    assert match is not None, text
    return float(match.group(1))


# ---- connection lifetime ------------------------------------------------------------------------


async def test_go_away_then_close_at_the_end_of_the_lifetime() -> None:
    lifetimes = Lifetimes(connection_s=2.0, go_away_before_s=1.2)
    async with (
        running(script=idle, lifetimes=lifetimes) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        connected = time.monotonic()
        got: list[Timed] = []
        task = asyncio.create_task(collect(session, got), name="collect")
        t_go_away, msg = await wait_for(got, lambda _, m: m.go_away is not None)
        with pytest.raises(errors.APIError) as info:
            async with asyncio.timeout(5):
                await task
        closed = time.monotonic()
    assert msg.go_away is not None
    left = parse_duration(msg.go_away.time_left)
    assert left == pytest.approx(1.2, abs=SLACK_S)
    assert t_go_away - connected == pytest.approx(0.8, abs=SLACK_S)  # sent while all is quiet
    assert closed - t_go_away == pytest.approx(left, abs=SLACK_S)
    assert closed - connected == pytest.approx(2.0, abs=SLACK_S)
    assert (info.value.code, info.value.details) == (1000, REASON_LIFETIME)
    assert [m.go_away is not None for _, m in got] == [True]
    assert emu.traffic.closes == [(0, 1000, REASON_LIFETIME)]


async def test_go_away_lead_is_clamped_to_a_short_lifetime() -> None:
    lifetimes = Lifetimes(connection_s=0.6, go_away_before_s=60)
    async with (
        running(script=idle, lifetimes=lifetimes) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        (first,) = await receive_until(session, lambda m: m.go_away is not None, limit_s=2)
        closed, error = await ended_by(session)
    assert first.go_away is not None
    assert parse_duration(first.go_away.time_left) == pytest.approx(0.6, abs=SLACK_S)
    assert error.code == 1000


# ---- sessions and resumption --------------------------------------------------------------------


async def test_resume_continues_the_session_and_counts_frames_cumulatively() -> None:
    async with running(responder=quick_responder()) as emu:
        client = client_for(emu)
        async with live(client, RESUME) as session:
            handle = await next_handle(session)
            await send_frames(session, 2)
            await session.send_realtime_input(text="how many frames")
            text = said(await receive_until(session, frames_said))
            assert "I have received 2 screen frames;" in text
        resume = {**CONFIG, "session_resumption": {"handle": handle}}
        async with live(client, resume) as session:
            await send_frames(session, 1)
            await session.send_realtime_input(text="and now")
            text = said(await receive_until(session, frames_said))
            assert "I have received 3 screen frames;" in text
        async with live(client, RESUME) as session:
            await send_frames(session, 1)
            await session.send_realtime_input(text="a new session")
            text = said(await receive_until(session, frames_said))
            assert "I have received 1 screen frame;" in text
        rec = emu.traffic
        assert await rec.wait_for_async(lambda r: len(r.closes) == 3, 5)
    sessions = rec.sessions
    assert sessions[0] == sessions[1] != sessions[2]
    assert rec.resumed == {0: False, 1: True, 2: False}


async def test_unknown_and_expired_handles_are_refused_with_1008() -> None:
    ttl = 1.0
    async with running(script=idle, lifetimes=Lifetimes(handle_ttl_s=ttl)) as emu:
        client = client_for(emu)
        rec = emu.traffic
        unknown_handle = {**CONFIG, "session_resumption": {"handle": "no-such-handle"}}
        with pytest.raises(errors.APIError) as unknown:
            async with live(client, unknown_handle):
                pass
        assert (unknown.value.code, unknown.value.details) == (1008, REASON_BAD_HANDLE)

        async with live(client, RESUME) as session:
            handle = await next_handle(session)
        assert await rec.wait_for_async(lambda r: len(r.closes) == 2, 5)
        ended = time.monotonic()
        resume = {**CONFIG, "session_resumption": {"handle": handle}}
        async with live(client, resume) as session:
            assert session.setup_complete is not None  # still valid within the TTL
        assert time.monotonic() - ended < ttl
        await asyncio.sleep(ended + ttl + SLACK_S - time.monotonic())  # past the TTL
        with pytest.raises(errors.APIError) as expired:
            async with live(client, resume):
                pass
        assert (expired.value.code, expired.value.details) == (1008, REASON_BAD_HANDLE)
        assert await rec.wait_for_async(lambda r: len(r.closes) == 4, 5)
    assert [close[1:] for close in rec.closes] == [
        (1008, REASON_BAD_HANDLE),
        (1000, ""),
        (1000, ""),
        (1008, REASON_BAD_HANDLE),
    ]
    assert rec.resumed == {1: False, 2: True}
    assert len(rec.setups) == 4


async def test_handle_after_setup_and_not_resumable_while_generating() -> None:
    async with (
        running(responder=quick_responder(burst_ms=0)) as emu,
        live(client_for(emu), RESUME) as session,
    ):
        first = await receive_until(session, lambda m: True)
        await session.send_realtime_input(text="hello")
        reply = await receive_until(session, lambda m: m.data is not None)
    assert handle_of(first[0]) == "emu-0-0"  # before any turn
    updates = [m.session_resumption_update for m in reply if m.session_resumption_update]
    assert len(updates) == 1
    assert updates[0].resumable is False
    assert not updates[0].new_handle
    assert emu.traffic.sessions == {0: "emu-session-1"}


# ---- the audio+video session limit --------------------------------------------------------------


async def test_av_session_limit_sums_connections_and_ends_the_session() -> None:
    limit = 1.5
    async with running(script=idle, lifetimes=Lifetimes(av_limit_s=limit)) as emu:
        client = client_for(emu)
        async with live(client, RESUME) as session:
            start = time.monotonic()
            handle = await next_handle(session)
            await send_audio_and_frame(session)
            await asyncio.sleep(0.6)  # use part of the session's time, then leave
        first_s = time.monotonic() - start
        resume = {**CONFIG, "session_resumption": {"handle": handle}}
        async with live(client, resume) as session:
            start = time.monotonic()
            closed, error = await ended_by(session)
        assert (error.code, error.details) == (1000, REASON_AV_LIMIT)
        assert first_s + (closed - start) == pytest.approx(limit, abs=SLACK_S)
        with pytest.raises(errors.APIError) as refused:  # the session is over
            async with live(client, resume):
                pass
        assert refused.value.code == 1008


async def test_av_session_limit_without_compression_only() -> None:
    limit = 1.0
    compressed = {**CONFIG, "context_window_compression": {"sliding_window": {}}}
    async with running(script=idle, lifetimes=Lifetimes(av_limit_s=limit)) as emu:
        client = client_for(emu)
        async with (
            live(client, CONFIG) as plain,
            live(client, compressed) as kept,
        ):
            start = time.monotonic()
            await send_audio_and_frame(plain)
            await send_audio_and_frame(kept)
            closed, error = await ended_by(plain)
            assert (error.code, error.details) == (1000, REASON_AV_LIMIT)
            assert closed - start == pytest.approx(limit, abs=SLACK_S)
            with pytest.raises(TimeoutError):  # runs on well past the limit
                await receive_until(kept, lambda m: True, limit_s=2 * limit)
            assert emu.traffic.audio_seconds() == pytest.approx(0.2)
            await kept.send_realtime_input(text="still here")
            assert await emu.traffic.wait_for_async(lambda r: len(r.texts) == 1, 5)
        setups = emu.traffic.setups
        assert "contextWindowCompression" in setups[1]


# ---- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [
        (Fault("drop", after_s=0.3), 1006, None),
        (Fault("close", after_s=0.3), 1011, "Internal error occurred."),
        (Fault("close", after_s=0.3, code=1013, reason="Try again later."), 1013, None),
    ],
    ids=["drop", "close-1011", "close-1013"],
)
async def test_drop_and_close_faults(fault: Fault, code: int, reason: str | None) -> None:
    async with (
        running(responder=quick_responder(), faults=[fault]) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        start = time.monotonic()
        closed, error = await ended_by(session)
    assert error.code == code
    if reason is not None:
        assert error.details == reason
    assert closed - start == pytest.approx(0.3, abs=SLACK_S)
    assert emu.traffic.faults == [(0, fault.kind)]


async def test_stall_stops_reading_sending_and_pongs_for_its_duration() -> None:
    stall = Fault("stall", after_s=0.5, duration_s=1.5)
    responder = quick_responder(burst_ms=0, pace=1.0)  # a message every 100 ms
    async with (
        running(responder=responder, faults=[stall]) as emu,
        live(client_for(emu), CONFIG) as session,
    ):
        start = time.monotonic()
        await session.send_realtime_input(text="talk through the stall")
        got: list[Timed] = []
        task = asyncio.create_task(collect(session, got), name="collect")
        try:
            await asyncio.sleep(start + 0.7 - time.monotonic())  # inside the stall
            assert emu.traffic.faults == [(0, "stall")]
            ws = session._ws
            pong = await ws.ping()
            await session.send_realtime_input(text="are you there")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pong), start + 1.8 - time.monotonic())
            assert [t.text for t in emu.traffic.texts] == ["talk through the stall"]
            await asyncio.wait_for(pong, 2)
            ponged = time.monotonic()
            assert await emu.traffic.wait_for_async(lambda r: len(r.texts) == 2, 2)
            await wait_for(got, lambda t, _: t > start + 2.0 + SLACK_S, 3)
        finally:
            task.cancel()
            await asyncio.wait([task])
    assert ponged - start == pytest.approx(2.0, abs=SLACK_S)
    times = [t - start for t, _ in got]
    assert any(t < 0.5 for t in times)  # traffic before,
    assert not [t for t in times if 0.5 + SLACK_S < t < 2.0 - SLACK_S]  # none during,
    assert any(t > 2.0 for t in times)  # and after the stall


async def test_reject_fault_fails_connect_a_number_of_times() -> None:
    reject = Fault("reject", times=2, code=1011, reason="The service is currently unavailable.")
    async with running(script=idle, faults=[reject]) as emu:
        client = client_for(emu)
        for _ in range(2):
            with pytest.raises(errors.APIError) as info:
                async with live(client, CONFIG):
                    pass
            assert (info.value.code, info.value.details) == (
                1011,
                "The service is currently unavailable.",
            )
        async with live(client, CONFIG) as session:
            assert session.setup_complete is not None
        rec = emu.traffic
        assert await rec.wait_for_async(lambda r: len(r.closes) == 3, 5)
    assert rec.faults == [(0, "reject"), (1, "reject")]
    assert list(rec.sessions) == [2]
    assert len(rec.setups) == 3


async def test_faults_apply_to_the_chosen_connection_in_scripted_mode() -> None:
    seen: list[int] = []

    async def script(conn: EmulatorConnection) -> None:
        seen.append(conn.index)

    faults = [Fault("close", after_s=0.1, connection=1, code=1011), Fault("reject", connection=2)]
    async with running(script=script, faults=faults) as emu:
        client = client_for(emu)
        async with live(client, CONFIG) as first:
            async with live(client, CONFIG) as second:
                _, error = await ended_by(second)
                assert error.code == 1011
            with pytest.raises(errors.APIError) as rejected:
                async with live(client, CONFIG):
                    pass
            assert rejected.value.code == 1011
            with pytest.raises(TimeoutError):  # the first connection is left alone
                await receive_until(first, lambda m: True, limit_s=0.3)
        assert await emu.traffic.wait_for_async(lambda r: len(r.closes) == 3, 5)
    assert seen == [0, 1]
    assert emu.traffic.faults == [(1, "close"), (2, "reject")]


# ---- reply pacing -------------------------------------------------------------------------------


async def test_slow_and_gappy_reply_audio() -> None:
    slow = quick_responder(burst_ms=0, pace=0.5)
    gappy = quick_responder(burst_ms=0, pace=4.0, gap_every_ms=500, gap_ms=400)
    async with running(responder=slow) as emu_slow, running(responder=gappy) as emu_gappy:
        results = []
        for emu in (emu_slow, emu_gappy):
            async with live(client_for(emu), CONFIG) as session:
                await session.send_realtime_input(text="pace me")
                got: list[Timed] = []
                task = asyncio.create_task(collect(session, got), name="collect")
                first, _ = await wait_for(got, lambda _, m: m.data is not None)
                await asyncio.sleep(first + 1.5 - time.monotonic())
                task.cancel()
                await asyncio.wait([task])
                results.append([(t - first, len(m.data)) for t, m in got if m.data and t >= first])
    slow_audio, gappy_audio = results
    # pace 0.5: 1.5 s of sending carries about 0.75 s of audio (plus the chunk on its way).
    assert sum(n for _, n in slow_audio) / 48_000 == pytest.approx(0.8, abs=0.15)
    # pace 4 with a 400 ms gap after every 500 ms of audio: bursts of 5 chunks.
    arrivals = [t for t, _ in gappy_audio]
    pauses = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    long_pauses = [i for i, p in enumerate(pauses) if p > 0.3]
    assert long_pauses[:2] == [4, 9]
    assert all(p < 0.1 for i, p in enumerate(pauses) if i not in long_pauses)


# ---- bounded state over a long conversation -----------------------------------------------------


async def test_a_long_resumed_conversation_keeps_bounded_state() -> None:
    connections = 12
    seconds_each = 300  # an hour of audio in all, in one-second chunks
    chunk = b"\x00\x00" * 16_000
    lifetimes = Lifetimes(connection_s=20.0, go_away_before_s=5.0, handle_ttl_s=60.0)
    async with running(responder=quick_responder(), lifetimes=lifetimes) as emu:
        client = client_for(emu)
        handle: str | None = None
        for _ in range(connections):
            config = {**CONFIG, "session_resumption": {"handle": handle} if handle else {}}
            async with live(client, config) as session:
                handle = await next_handle(session)
                for _ in range(seconds_each):
                    await session.send_realtime_input(
                        audio=types.Blob(data=chunk, mime_type="audio/pcm;rate=16000")
                    )
                await send_frames(session, 1)
                await session.send_realtime_input(text="how many")
                text = said(await receive_until(session, frames_said))
        rec = emu.traffic
        assert await rec.wait_for_async(lambda r: len(r.closes) == connections, 5)
        assert f"I have received {connections} screen frames;" in text
        assert rec.audio_seconds() == pytest.approx(connections * seconds_each)
        assert set(rec.resumed.values()) == {False, True}
        assert len(set(rec.sessions.values())) == 1
        assert len(emu.sessions) == 1  # one idle session, kept for its handles
        assert emu.sessions.handle_count <= MAX_HANDLES_PER_SESSION
        leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("live-emulator")]
        assert leftover == []
