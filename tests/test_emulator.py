"""The Live emulator against the real, unmodified google-genai SDK over TLS."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets
from google import genai
from google.genai import errors, types
from websockets.asyncio.client import connect as ws_connect

from screenshare_widget.emulator import (
    DefaultResponder,
    EmulatorConnection,
    LiveEmulator,
    Realism,
    Traffic,
    shared_emulator,
)

pytestmark = pytest.mark.timeout(30)

MODEL = "gemini-3.8-live"
RATE_IN = 16_000
RATE_OUT = 24_000
PATH = "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"
CONFIG: dict[str, Any] = {
    "response_modalities": ["AUDIO"],
    "input_audio_transcription": {},
    "output_audio_transcription": {},
}


def client_for(emu: LiveEmulator, key: str = "test", **http: Any) -> genai.Client:
    options = {"base_url": emu.url, "async_client_args": {"ssl": emu.client_ssl_context()}}
    options.update(http)
    return genai.Client(api_key=key, http_options=types.HttpOptions(**options))


def fake_jpeg(width: int, height: int, size: int = 2000) -> bytes:
    """JPEG-shaped bytes with a SOF0 header giving the size (enough for the emulator)."""
    sof = (
        b"\xff\xc0\x00\x11\x08"
        + height.to_bytes(2, "big")
        + width.to_bytes(2, "big")
        + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )
    body = bytes(np.random.default_rng(size).integers(0, 255, size, dtype=np.uint8))
    return b"\xff\xd8" + sof + b"\xff\xda\x00\x02" + body.replace(b"\xff", b"\x00") + b"\xff\xd9"


def utterance(speech_s: float, silence_s: float, lead_s: float = 0.3) -> bytes:
    """Speech-like 16 kHz PCM16: a modulated voiced tone between stretches of silence."""
    t = np.arange(round(speech_s * RATE_IN)) / RATE_IN
    voice = (np.sin(2 * np.pi * 180 * t) + 0.4 * np.sin(2 * np.pi * 540 * t)) / 1.4
    voice *= 0.15 * (0.55 + 0.45 * np.sin(2 * np.pi * 3.5 * t))
    y = np.concatenate(
        [np.zeros(round(lead_s * RATE_IN)), voice, np.zeros(round(silence_s * RATE_IN))]
    )
    return (y * 32767).astype("<i2").tobytes()


async def send_audio(session: Any, pcm: bytes, *, chunk_ms: int = 40, speed: float = 4.0) -> None:
    """Send PCM in ``chunk_ms`` chunks at ``speed`` times real time."""
    step = RATE_IN * 2 * chunk_ms // 1000
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n, i in enumerate(range(0, len(pcm), step)):
        delay = start + n * chunk_ms / 1000 / speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await session.send_realtime_input(
            audio=types.Blob(data=pcm[i : i + step], mime_type="audio/pcm;rate=16000")
        )


async def receive_until(
    session: Any,
    done: Callable[[types.LiveServerMessage], bool],
    limit_s: float = 10.0,
) -> list[tuple[float, types.LiveServerMessage]]:
    """Messages (with their arrival time) until ``done(msg)``, across turns."""
    got: list[tuple[float, types.LiveServerMessage]] = []
    async with asyncio.timeout(limit_s):
        while True:
            async for msg in session.receive():
                got.append((time.monotonic(), msg))
                if done(msg):
                    return got


def turn_complete(msg: types.LiveServerMessage) -> bool:
    return bool(msg.server_content and msg.server_content.turn_complete)


@asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[LiveEmulator]:
    """An emulator on this loop; idealised unless ``realism=`` says otherwise (these tests
    pin the idealised behaviour; the realistic one is in test_emulator_realism.py)."""
    kwargs.setdefault("realism", Realism.ideal())
    async with LiveEmulator(**kwargs) as emu:
        yield emu


async def idle(conn: EmulatorConnection) -> None:
    """A script that does nothing: the connection stays open until the client closes."""


# ---- setup and what is recorded ---------------------------------------------------------------


async def test_setup_is_recorded_and_answered_first() -> None:
    async with running(script=idle) as emu:
        config = {
            **CONFIG,
            "system_instruction": "You are a screen-sharing assistant.",
            "session_resumption": {},
        }
        async with client_for(emu).aio.live.connect(model=MODEL, config=config) as session:
            assert session.setup_complete is not None
        (setup,) = emu.traffic.setups
        assert setup["model"] == f"models/{MODEL}"
        assert (
            setup["systemInstruction"]["parts"][0]["text"] == "You are a screen-sharing assistant."
        )
        assert setup["inputAudioTranscription"] == {}
        assert setup["outputAudioTranscription"] == {}
        assert setup["sessionResumption"] == {}
        assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
        assert emu.traffic.connections == 1
        assert emu.traffic.key_present(0)
        kinds = [m.kind for m in emu.traffic.messages]
        assert kinds == ["setup"]
        assert emu.traffic.wait_for_async is not None
        assert await emu.traffic.wait_for_async(lambda r: len(r.closes) == 1, 5)
        assert emu.traffic.closes == [(0, 1000, "")]


async def test_media_text_and_other_messages_arrive_intact() -> None:
    rng = np.random.default_rng(7)
    chunks = [bytes(rng.integers(0, 256, 640, dtype=np.uint8)) for _ in range(5)]
    jpeg = fake_jpeg(1024, 576, 23_000)
    async with (
        running(script=idle) as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        before = time.time()
        for chunk in chunks:
            await session.send_realtime_input(
                audio=types.Blob(data=chunk, mime_type="audio/pcm;rate=16000")
            )
        await session.send_realtime_input(video=types.Blob(data=jpeg, mime_type="image/jpeg"))
        await session.send_realtime_input(text="hello emulator")
        await session.send_realtime_input(audio_stream_end=True)
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="typed turn")]),
            turn_complete=True,
        )
        await session.send_tool_response(
            function_responses=types.FunctionResponse(
                id="call-9", name="get_time", response={"nowIs": "12:00"}
            )
        )
        await session.send_context_update(system_instruction="Be brief.")
        await session.send_realtime_input(
            media=types.Blob(data=b"\x01\x02" * 160, mime_type="audio/pcm;rate=16000")
        )
        rec = emu.traffic
        assert await rec.wait_for_async(lambda r: len(r.messages) >= 12, 5)
        after = time.time()
        assert [a.data for a in rec.audio] == [*chunks, b"\x01\x02" * 160]
        assert all(a.mime == "audio/pcm;rate=16000" for a in rec.audio)
        assert all(before <= a.t <= after for a in rec.audio)
        assert rec.audio_seconds(0) == pytest.approx((5 * 640 + 320) / 32_000)
        (frame,) = rec.frames
        assert frame.data == jpeg
        assert (frame.width, frame.height, frame.mime) == (1024, 576, "image/jpeg")
        assert before <= frame.t <= after
        assert [t.text for t in rec.texts] == ["hello emulator", "typed turn"]
        kinds = [m.kind for m in rec.messages]
        assert kinds == [
            "setup",
            *["realtime_input"] * 8,
            "client_content",
            "tool_response",
            "context_update",
            "realtime_input",
        ]
        summaries = [m.summary for m in rec.messages]
        assert summaries[1] == {"audio": {"data": 640, "mime_type": "audio/pcm;rate=16000"}}
        assert summaries[6] == {"video": {"data": len(jpeg), "mime_type": "image/jpeg"}}
        assert summaries[8] == {"audio_stream_end": True}
        assert summaries[9]["turn_complete"] is True
        assert summaries[10]["function_responses"][0] == {
            "id": "call-9",
            "name": "get_time",
            "response": {"nowIs": "12:00"},
        }
        assert summaries[11]["system_instruction"]["parts"][0]["text"] == "Be brief."
        assert summaries[12] == {
            "media_chunks": [{"data": 320, "mime_type": "audio/pcm;rate=16000"}]
        }


async def test_api_key_is_never_recorded_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-very-secret-4711"
    caplog.set_level(logging.DEBUG, logger="screenshare_widget")
    async with running(script=idle) as emu:
        async with client_for(emu, key=secret).aio.live.connect(model=MODEL, config=CONFIG) as s:
            await s.send_realtime_input(text="hi")
            assert await emu.traffic.wait_for_async(lambda r: len(r.texts) == 1, 5)
        rec = emu.traffic
        everything = repr((rec.setups, rec.messages, rec.texts, rec.closes))
        assert emu.traffic.key_present(0)
    assert "connection 0 opened" in caplog.text
    assert secret not in everything
    assert secret not in caplog.text


# ---- scripted mode ------------------------------------------------------------------------------


async def test_scripted_messages_reach_the_sdk() -> None:
    reply = bytes(np.random.default_rng(3).integers(0, 256, 24_000 * 2 // 2 * 2, dtype=np.uint8))
    seen: dict[str, Any] = {}

    async def script(conn: EmulatorConnection) -> None:
        seen["model"] = conn.model
        seen["text"] = await conn.next_message("realtime_input")
        await conn.input_transcription("what is on my screen")
        await conn.send_audio(reply, chunk_ms=100)
        await conn.output_transcription("A terminal.")
        await conn.generation_complete()
        await conn.turn_complete({"promptTokenCount": 3, "totalTokenCount": 3})
        await conn.go_away("7s")
        await conn.resumption_update("handle-1")
        await conn.tool_call([{"id": "call-1", "name": "get_time", "args": {"tz": "UTC"}}])
        seen["tool"] = await conn.next_message("toolResponse")
        await conn.tool_call_cancellation(["call-1"])
        await conn.interrupted()
        await conn.turn_complete()

    async with running(script=script, session_resumption_handles=False) as emu:
        config = {**CONFIG, "session_resumption": {}}
        async with client_for(emu).aio.live.connect(model=MODEL, config=config) as session:
            await session.send_realtime_input(text="describe")
            first = [m for _, m in await receive_until(session, turn_complete)]
            second: list[types.LiveServerMessage] = []
            async with asyncio.timeout(10):
                while True:
                    async for msg in session.receive():
                        second.append(msg)
                        if msg.tool_call:
                            await session.send_tool_response(
                                function_responses=[
                                    {"id": "call-1", "name": "get_time", "response": {"t": "12"}}
                                ]
                            )
                    if second and turn_complete(second[-1]):
                        break
    assert seen["model"] == MODEL
    assert seen["text"] == {"text": "describe"}
    assert seen["tool"]["function_responses"][0]["id"] == "call-1"
    contents = [m.server_content for m in first if m.server_content]
    assert contents[0].input_transcription is not None
    assert contents[0].input_transcription.text == "what is on my screen"
    audio = b"".join(m.data for m in first if m.data)
    assert audio == reply
    parts = [
        p
        for m in first
        if m.server_content and m.server_content.model_turn
        for p in m.server_content.model_turn.parts or []
    ]
    assert len(parts) == 10
    assert {p.inline_data.mime_type for p in parts if p.inline_data} == {"audio/pcm;rate=24000"}
    assert any(
        c.output_transcription and c.output_transcription.text == "A terminal." for c in contents
    )
    assert any(c.generation_complete for c in contents)
    assert first[-1].usage_metadata is not None
    assert first[-1].usage_metadata.prompt_token_count == 3
    assert second[0].go_away is not None
    assert second[0].go_away.time_left == "7s"
    assert second[1].session_resumption_update is not None
    assert second[1].session_resumption_update.new_handle == "handle-1"
    assert second[1].session_resumption_update.resumable is True
    assert second[2].tool_call is not None
    assert second[2].tool_call.function_calls[0].args == {"tz": "UTC"}
    assert second[3].tool_call_cancellation is not None
    assert second[3].tool_call_cancellation.ids == ["call-1"]
    assert second[4].server_content is not None
    assert second[4].server_content.interrupted is True
    assert turn_complete(second[5])


async def test_resumption_handles_follow_each_turn_and_resume_is_accepted() -> None:
    async def script(conn: EmulatorConnection) -> None:
        for _ in range(2):
            await conn.next_message("realtime_input")
            await conn.turn_complete()

    async with running(script=script) as emu:
        client = client_for(emu)
        config = {**CONFIG, "session_resumption": {}}
        handles = []
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            for _ in range(2):
                await session.send_realtime_input(text="next")
                await receive_until(session, turn_complete)
                got = await receive_until(
                    session, lambda m: m.session_resumption_update is not None
                )
                update = got[-1][1].session_resumption_update
                assert update is not None
                assert update.resumable is True
                handles.append(update.new_handle)
        assert handles == ["emu-0-1", "emu-0-2"]
        resumed = {**CONFIG, "session_resumption": {"handle": handles[-1]}}
        async with client.aio.live.connect(model=MODEL, config=resumed) as session:
            assert session.setup_complete is not None
        assert emu.traffic.setups[1]["sessionResumption"] == {"handle": "emu-0-2"}


async def test_setup_complete_can_be_sent_by_the_script() -> None:
    async def script(conn: EmulatorConnection) -> None:
        assert not conn.setup_complete_sent
        await asyncio.sleep(0.05)
        await conn.send({"setupComplete": {"sessionId": "scripted-session"}})

    async with (
        running(script=script, auto_setup_complete=False) as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        assert session.session_id == "scripted-session"


async def test_wait_audio_in_a_script() -> None:
    done = asyncio.Event()

    async def script(conn: EmulatorConnection) -> None:
        await conn.wait_audio(0.5, timeout=5)
        assert conn.audio_seconds >= 0.5
        done.set()

    async with (
        running(script=script) as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        await send_audio(session, b"\x00\x00" * 8000, speed=20)
        async with asyncio.timeout(5):
            await done.wait()


# ---- closes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "config", "code", "reason"),
    [
        (MODEL, CONFIG, 1007, "API key not valid. Please pass a valid API key."),
        (
            "gemini-9-live",
            CONFIG,
            1008,
            # Cut to the 123 bytes a close frame carries, as the service cuts it.
            "models/gemini-9-live is not found for API version v1, or is not supported for "
            "bidiGenerateContent. Call ListModels to see t",
        ),
        (
            MODEL,
            {**CONFIG, "thinking_config": {"thinking_budget": 0}},
            1007,
            "Request contains an invalid argument.",
        ),
        (
            "gemini-3.1-flash-live-preview",
            {**CONFIG, "enable_affective_dialog": True},
            1007,
            "Request contains an invalid argument.",
        ),
    ],
    ids=["bad-key", "unknown-model", "3.8-thinking", "3.1-affective"],
)
async def test_refused_setups_close_like_the_service(
    model: str, config: dict[str, Any], code: int, reason: str
) -> None:
    async with running(script=idle, api_keys={"good-key"}) as emu:
        key = "bad-key" if code == 1007 and "API key" in reason else "good-key"
        with pytest.raises(errors.APIError) as info:
            async with client_for(emu, key=key).aio.live.connect(model=model, config=config):
                pass
        assert info.value.code == code
        assert info.value.details == reason
        assert await emu.traffic.wait_for_async(lambda r: bool(r.closes), 5)
        assert emu.traffic.closes == [(0, code, reason)]
        assert len(emu.traffic.setups) == 1


async def test_server_close_1011_mid_session() -> None:
    async def script(conn: EmulatorConnection) -> None:
        await conn.next_message("realtime_input")
        await conn.close(1011, "Internal error occurred.")

    async with (
        running(script=script) as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        await session.send_realtime_input(text="go")
        with pytest.raises(errors.APIError) as info:
            await receive_until(session, turn_complete)
        assert info.value.code == 1011
        assert info.value.details == "Internal error occurred."
        assert await emu.traffic.wait_for_async(lambda r: bool(r.closes), 5)
        assert emu.traffic.closes == [(0, 1011, "Internal error occurred.")]


async def test_abort_is_seen_as_1006() -> None:
    async def script(conn: EmulatorConnection) -> None:
        await conn.next_message("realtime_input")
        conn.abort()

    async with (
        running(script=script) as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        await session.send_realtime_input(text="go")
        with pytest.raises(errors.APIError) as info:
            await receive_until(session, turn_complete)
        assert info.value.code == 1006
        assert await emu.traffic.wait_for_async(lambda r: bool(r.closes), 5)
        assert emu.traffic.closes[0][:2] == (0, 1006)


async def test_failing_script_closes_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def script(conn: EmulatorConnection) -> None:
        raise RuntimeError("boom")

    async with (
        running(script=script) as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        with pytest.raises(errors.APIError) as info:
            await receive_until(session, turn_complete)
        assert info.value.code == 1011
    assert "the script failed" in caplog.text


# ---- the default responder ----------------------------------------------------------------------


async def test_default_responder_answers_an_utterance() -> None:
    async with (
        running() as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        await session.send_realtime_input(
            video=types.Blob(data=fake_jpeg(1024, 576, 23_000), mime_type="image/jpeg")
        )
        sender = asyncio.create_task(send_audio(session, utterance(1.0, 1.0)), name="send")
        got = await receive_until(session, turn_complete, limit_s=15)
        await sender
    messages = [m for _, m in got]
    contents = [m.server_content for m in messages if m.server_content]
    heard = [c.input_transcription.text for c in contents if c.input_transcription]
    assert len(heard) == 1
    match = re.fullmatch(r"\(spoke for (\d+\.\d) s\)", heard[0] or "")
    assert match is not None
    assert 0.8 <= float(match.group(1)) <= 1.2
    said = "".join(c.output_transcription.text or "" for c in contents if c.output_transcription)
    assert said.startswith(f"You spoke for {match.group(1)} seconds. ")
    assert "I have received 1 screen frame; the latest is 1024 by 576 pixels, 23 kilobytes." in said
    assert 2 <= sum(1 for c in contents if c.output_transcription) <= 3
    mimes = {
        p.inline_data.mime_type
        for c in contents
        if c.model_turn
        for p in c.model_turn.parts or []
        if p.inline_data
    }
    assert mimes == {"audio/pcm;rate=24000"}
    audio = b"".join(m.data for m in messages if m.data)
    reply_s = len(audio) / (RATE_OUT * 2)
    assert 2.0 < reply_s < 12.0
    samples = np.frombuffer(audio, dtype="<i2")
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 300  # not silence
    # Audio arrives faster than real time; turnComplete waits for its real-time end.
    audio_times = [t for t, m in got if m.data]
    complete_time = got[-1][0]
    assert audio_times[-1] - audio_times[0] < 0.8 * reply_s
    assert complete_time - audio_times[0] >= reply_s - 0.25
    generation = [t for t, m in got if m.server_content and m.server_content.generation_complete]
    assert len(generation) == 1
    assert audio_times[-1] <= generation[0] <= complete_time
    usage = messages[-1].usage_metadata
    assert usage is not None
    assert usage.response_token_count == round(reply_s * 25)
    prompt = {d.modality: d.token_count for d in usage.prompt_tokens_details or []}
    assert prompt[types.MediaModality.IMAGE] == 258
    assert 30 <= (prompt[types.MediaModality.AUDIO] or 0) <= 60
    assert usage.total_token_count == (usage.prompt_token_count or 0) + usage.response_token_count


async def test_barge_in_interrupts_the_reply() -> None:
    async with (
        running() as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        await send_audio(session, utterance(0.6, 0.8))
        got = await receive_until(session, lambda m: m.data is not None, limit_s=10)
        sender = asyncio.create_task(send_audio(session, utterance(0.8, 1.0)), name="send")
        got += await receive_until(
            session, lambda m: bool(m.server_content and m.server_content.interrupted)
        )
        assert not any(turn_complete(m) for _, m in got)
        got += await receive_until(session, turn_complete, limit_s=15)
        await sender
    contents = [m.server_content for _, m in got if m.server_content]
    heard = [c.input_transcription.text for c in contents if c.input_transcription]
    assert len(heard) == 2
    assert heard[0] == "(spoke for 0.6 s)"
    assert heard[1] == "(spoke for 0.8 s)"
    assert sum(1 for c in contents if c.interrupted) == 1
    said = "".join(c.output_transcription.text or "" for c in contents if c.output_transcription)
    assert "You spoke for 0.8 seconds." in said
    # What the emulator says it sent is what the SDK got: the same audio, one interruption.
    sent = emu.traffic.sent
    assert sent[0].keys == ("setupComplete",)
    assert [s.t for s in sent] == sorted(s.t for s in sent)
    assert b"".join(s.audio for s in sent) == b"".join(m.data or b"" for _, m in got)
    assert [s.keys for s in sent if "interrupted" in s.keys] == [("serverContent", "interrupted")]
    assert any(s.keys == ("serverContent", "modelTurn") and s.audio for s in sent)


def heard_text(msg: types.LiveServerMessage) -> str | None:
    content = msg.server_content
    return content.input_transcription.text if content and content.input_transcription else None


async def test_audio_stream_end_ends_the_utterance() -> None:
    async with (
        running(responder=DefaultResponder(use_espeak=False)) as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        await send_audio(session, utterance(0.6, 0.0))  # no trailing silence to end it
        await session.send_realtime_input(audio_stream_end=True)
        got = await receive_until(session, lambda m: heard_text(m) is not None, limit_s=1.0)
    assert heard_text(got[-1][1]) == "(spoke for 0.6 s)"


async def test_manual_activity_markers_delimit_the_utterance() -> None:
    config = {
        **CONFIG,
        "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
    }
    async with (
        running(responder=DefaultResponder(use_espeak=False)) as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=config) as session,
    ):
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await send_audio(session, b"\x00\x00" * 12_000, speed=20)  # 0.75 s, even silent
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        got = await receive_until(session, lambda m: heard_text(m) is not None, limit_s=2.0)
    assert heard_text(got[-1][1]) == "(spoke for 0.8 s)"


async def test_text_gets_a_spoken_answer() -> None:
    async with (
        running(responder=DefaultResponder(use_espeak=False)) as emu,
        client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session,
    ):
        await session.send_realtime_input(text="what do you see")
        got = await receive_until(session, turn_complete)
    contents = [m.server_content for _, m in got if m.server_content]
    said = "".join(c.output_transcription.text or "" for c in contents if c.output_transcription)
    assert said == "You wrote: what do you see. I have not received any screen frames yet."
    assert not any(c.input_transcription for c in contents)
    audio = b"".join(m.data for _, m in got if m.data)
    tone_s = len(said) * 0.065
    assert len(audio) / (RATE_OUT * 2) == pytest.approx(tone_s, abs=0.01)


# ---- URLs, paths and raw frames -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "version"),
    [("/", "v1"), ("", "v1beta"), ("/proxy/x", "v1alpha")],
    ids=["trailing-slash", "v1beta", "prefix"],
)
async def test_url_variants(suffix: str, version: str) -> None:
    seen: list[str] = []

    async def script(conn: EmulatorConnection) -> None:
        seen.append(conn.version)

    async with running(script=script) as emu:
        client = client_for(emu, base_url=emu.url + suffix, api_version=version)
        async with client.aio.live.connect(model=MODEL, config=CONFIG) as session:
            assert session.setup_complete is not None
        assert emu.url.startswith("https://127.0.0.1:")
        assert not emu.url.endswith("/")
    assert seen == [version]


async def test_other_paths_get_404() -> None:
    async with running(script=idle) as emu:
        uri = emu.url.replace("https://", "wss://") + "/ws/something.Else"
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with ws_connect(uri, ssl=emu.client_ssl_context()):
                pass
        assert info.value.response.status_code == 404
        assert emu.traffic.connections == 0


async def test_invalid_json_and_malformed_messages(caplog: pytest.LogCaptureFixture) -> None:
    async with running(script=idle) as emu:
        uri = emu.url.replace("https://", "wss://") + PATH
        headers = {"x-goog-api-key": "k"}
        async with ws_connect(uri, ssl=emu.client_ssl_context(), additional_headers=headers) as ws:
            await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
            assert json.loads(await ws.recv()) == {"setupComplete": {}}
            await ws.send(json.dumps({"realtimeInput": {"audio": {"data": "@@", "mimeType": "x"}}}))
            await ws.send(json.dumps({"brandNew": {}}))
            await ws.send(json.dumps({"realtimeInput": {"text": "still alive"}}))
            assert await emu.traffic.wait_for_async(lambda r: len(r.texts) == 1, 5)
            await ws.send("{not json")
            with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1007
            assert info.value.rcvd.reason == "Invalid JSON payload received."
        kinds = [m.kind for m in emu.traffic.messages]
        assert kinds == ["setup", "realtime_input", "brandNew", "realtime_input", "invalid_json"]
    assert "invalid base64" in caplog.text
    assert "unknown message kind" in caplog.text


async def test_key_in_query_is_accepted_like_browsers_send_it() -> None:
    async with running(script=idle, api_keys={"qkey"}) as emu:
        uri = emu.url.replace("https://", "wss://") + PATH + "?key=qkey"
        async with ws_connect(uri, ssl=emu.client_ssl_context()) as ws:
            await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
            assert json.loads(await ws.recv()) == {"setupComplete": {}}
        assert emu.traffic.key_present(0)


async def test_server_frames_are_binary_camelcase_and_standard_base64() -> None:
    async with running(responder=DefaultResponder(use_espeak=False)) as emu:
        uri = emu.url.replace("https://", "wss://") + "//" + PATH.lstrip("/")
        headers = {"x-goog-api-key": "k"}
        async with ws_connect(uri, ssl=emu.client_ssl_context(), additional_headers=headers) as ws:
            await ws.send(
                json.dumps({"setup": {"model": f"models/{MODEL}", "sessionResumption": {}}})
            )
            await ws.send(json.dumps({"realtime_input": {"text": "x"}}))
            frames = []
            async with asyncio.timeout(10):
                while True:
                    frame = await ws.recv()
                    frames.append(frame)
                    if b"sessionResumptionUpdate" in frame and b"turnComplete" in frames[-2]:
                        break
    assert all(isinstance(f, bytes) and len(f) < 1024 * 1024 for f in frames)
    messages = [json.loads(f) for f in frames]
    assert messages[0] == {"setupComplete": {}}
    updates = [m["sessionResumptionUpdate"] for m in messages if "sessionResumptionUpdate" in m]
    assert updates == [
        {"newHandle": "emu-0-0", "resumable": True},  # right after setupComplete
        {"resumable": False},  # the reply starts
        {"newHandle": "emu-0-1", "resumable": True},  # after its turnComplete
    ]
    allowed = {"setupComplete", "serverContent", "usageMetadata", "sessionResumptionUpdate"}
    assert all(set(m) <= allowed for m in messages)
    data = [
        p["inlineData"]["data"]
        for m in messages
        for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    ]
    assert data
    assert all("-" not in d and "_" not in d for d in data)
    assert all(len(base64.b64decode(d, validate=True)) <= 4800 for d in data)


# ---- threads and the CLI ------------------------------------------------------------------------


async def test_start_in_thread_and_stop() -> None:
    before = set(threading.enumerate())  # the process-wide shared emulator may run already
    emu = LiveEmulator(script=idle)
    assert emu.start_in_thread() is emu
    assert emu.start_in_thread() is emu
    (thread,) = set(threading.enumerate()) - before  # idempotent: one thread, its own
    try:
        assert thread.name == "live-emulator" and thread.daemon
        cafile = Path(emu.cafile)
        assert await asyncio.to_thread(cafile.exists)
        assert ssl.create_default_context(cafile=str(cafile)) is not None
        async with client_for(emu).aio.live.connect(model=MODEL, config=CONFIG) as session:
            await session.send_realtime_input(text="from another loop")
            rec: Traffic = emu.traffic
            assert await asyncio.to_thread(rec.wait_for, lambda r: len(r.texts) == 1, 5)
            assert rec.texts[0].text == "from another loop"
    finally:
        started = time.monotonic()
        await asyncio.to_thread(emu.stop)
        assert time.monotonic() - started < 5.5
    assert not await asyncio.to_thread(cafile.exists)
    assert not thread.is_alive()
    emu.stop()  # idempotent


def test_shared_emulator_is_a_singleton() -> None:
    first = shared_emulator()
    assert shared_emulator() is first
    assert first.url.startswith("https://127.0.0.1:")
    assert isinstance(first.responder, DefaultResponder)


def test_cli_prints_how_to_connect_and_stops_on_ctrl_c() -> None:
    # PYTHONFAULTHANDLER: if it hangs, the SIGABRT below makes it print where each thread is.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "screenshare_widget.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # As from a terminal: a suite started in the background (`cmd &`, nohup) passes on
        # SIGINT ignored, and Python then leaves it ignored (seen in CI as a 10 s hang).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        url = lines[0].split()[-1]
        cert = lines[1].split()[-1]
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", url)
        assert Path(cert).exists()
        assert f'base_url="{url}"' in lines[3]
        assert f'cafile="{cert}"' in lines[3]
        while "Ctrl-C" not in (line := proc.stdout.readline()):
            assert line, "the banner ended early"
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"the emulator did not stop on Ctrl-C within 10 s:\n{err[-6000:]}")
        assert code == 0, proc.stderr.read() if proc.stderr else code
        assert not Path(cert).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
