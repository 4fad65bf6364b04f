"""The Gemini adapter with the real SDK against the local emulator over TLS: message
conversion, error sentences, malformed messages, and the relay's handover on goAway."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest

from screenshare_widget import gemini
from screenshare_widget.config import SessionConfig
from screenshare_widget.emulator import EmulatorConnection, LiveEmulator
from screenshare_widget.relay import Relay, RelayState
from screenshare_widget.session import LiveError, ServerMessage

from .conftest import wait_until
from .fakes import RecordingSink

SECRET = "AIzaSyD-sentinel-key-0123456789abcdefghij"


async def collect(session, count: int) -> list[ServerMessage]:
    out: list[ServerMessage] = []
    async for message in session.receive():
        out.append(message)
        if len(out) == count:
            break
    return out


async def test_every_server_field_converts(caplog: pytest.LogCaptureFixture) -> None:
    async def script(conn: EmulatorConnection) -> None:
        await conn.next_message("realtime_input")
        await conn.input_transcription("What is")
        await conn.send(
            {
                "serverContent": {
                    "modelTurn": {
                        "parts": [
                            {
                                "inlineData": {
                                    "mimeType": "audio/pcm;rate=24000",
                                    "data": base64.b64encode(b"\x01\x00\x02\x00").decode(),
                                }
                            }
                        ]
                    },
                    "outputTranscription": {"text": "A chart"},
                    "generationComplete": True,
                }
            }
        )
        await conn.send({"brandNewMessage": {}})  # the SDK cannot parse this: skipped
        await conn.turn_complete(
            {
                "promptTokenCount": 30,
                "responseTokenCount": 5,
                "thoughtsTokenCount": 7,
                "toolUsePromptTokenCount": 4,
                "totalTokenCount": 46,
                "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 30}],
            }
        )
        await conn.interrupted()
        await conn.resumption_update("h-1", resumable=True)
        await conn.resumption_update("", resumable=False)
        await conn.go_away("12.5s")
        await conn.tool_call([{"id": "c1", "name": "lookup", "args": {"q": "x"}}])
        await conn.tool_call_cancellation(["c1"])

    async with LiveEmulator(script=script, session_resumption_handles=False) as emu:
        connect = gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile))
        async with connect(SessionConfig(), None) as session:
            await session.send_audio(b"\0\0" * 640)
            await session.send_frame(b"\xff\xd8\xff\xd9")
            await session.send_text("hi")
            with caplog.at_level(logging.WARNING, logger="screenshare_widget"):
                got = await collect(session, 9)
        rec = emu.recording
        assert len(rec.audio[0].data) == 1280
        assert rec.frames[0].data == b"\xff\xd8\xff\xd9"
        assert [t.text for t in rec.texts] == ["hi"]
        setup = rec.setups[0]
        assert setup["model"] == "models/gemini-3.8-live"

    assert "skipped a malformed Live server message" in caplog.text
    assert got[0].input_transcription == "What is"
    assert got[1].audio == b"\x01\x00\x02\x00"
    assert got[1].output_transcription == "A chart"
    assert got[1].generation_complete
    assert got[2].turn_complete
    assert got[2].usage is not None
    assert got[2].usage.total_tokens == 46
    assert got[2].usage.by_modality == {
        "prompt:AUDIO": 30, "response:THOUGHTS": 7, "prompt:TOOL_USE": 4
    }  # fmt: skip
    assert got[3].interrupted
    assert (got[4].resumption_handle, got[4].resumable) == ("h-1", True)
    assert (got[5].resumption_handle, got[5].resumable) == (None, False)
    assert got[6].go_away_s == 12.5
    assert got[7].tool_calls[0].name == "lookup"
    assert got[7].tool_calls[0].args == {"q": "x"}
    assert got[8].cancelled_tool_calls == ("c1",)


async def test_bad_key_is_fatal_with_the_fix_and_never_shows_the_key() -> None:
    async with LiveEmulator(api_keys={"the-right-key"}) as emu:
        client = gemini.client_for_emulator(emu.url, emu.cafile)
        client._api_client.api_key = SECRET
        with pytest.raises(LiveError) as caught:
            async with gemini.connector(client)(SessionConfig(), None):
                pass
    err = caught.value
    assert err.fatal
    assert err.code == 1007
    assert err.message == "API key not valid: set GEMINI_API_KEY or pass client=."
    assert SECRET not in f"{err.message} {err.reason} {err!r}"


async def test_unknown_model_is_fatal_and_named() -> None:
    async with LiveEmulator() as emu:
        connect = gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile))
        with pytest.raises(LiveError) as caught:
            async with connect(SessionConfig(model="gemini-0.1-nonsense"), None):
                pass
    assert caught.value.fatal
    assert caught.value.code == 1008
    assert "gemini-0.1-nonsense is not available" in caught.value.message
    assert "model=" in caught.value.message
    assert caught.value.blames == ("model",)  # changing the model clears it


@pytest.mark.parametrize(
    ("close", "code", "fatal", "words"),
    [
        ((1011, "Internal error occurred."), 1011, False, "1011: Internal error occurred."),
        ((1007, "Request contains an invalid argument."), 1007, True, "rejected the session"),
        ((1000, ""), 1000, False, "ended"),
        (None, 1006, False, "dropped (1006)"),
    ],
)
async def test_mid_session_ends_become_clear_errors(close, code, fatal, words) -> None:
    async def script(conn: EmulatorConnection) -> None:
        await conn.next_message("realtime_input")
        if close is None:
            conn.abort()
        else:
            await conn.close(*close)

    async with LiveEmulator(script=script) as emu:
        connect = gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile))
        async with connect(SessionConfig(), None) as session:
            await session.send_text("go")
            with pytest.raises(LiveError) as caught:
                await collect(session, 1000)  # everything up to the end
    assert (caught.value.code, caught.value.fatal) == (code, fatal)
    assert words in caught.value.message


def test_scrub_removes_keys() -> None:
    assert gemini.scrub(f"bad {SECRET} here") == "bad [api key] here"
    assert gemini.scrub("token abcd1234", "abcd1234") == "token [api key]"


@pytest.fixture
def handover_emulator() -> Iterator[LiveEmulator]:
    async def script(conn: EmulatorConnection) -> None:
        if conn.index == 0:
            await conn.resumption_update("resume-me", resumable=True)
            await conn.next_message("realtime_input")
            await conn.go_away("5s")
        else:
            await conn.output_transcription("Resumed")
            await conn.turn_complete()

    emu = LiveEmulator(script=script).start_in_thread()
    yield emu
    emu.stop()


def test_relay_hands_over_on_go_away_with_the_handle(handover_emulator: LiveEmulator) -> None:
    emu = handover_emulator
    sink = RecordingSink()
    client = gemini.client_for_emulator(emu.url, emu.cafile)
    relay = Relay(gemini.connector(client), SessionConfig(), sink)
    try:
        relay.start()
        wait_until(lambda: relay.state is RelayState.LIVE, 10)
        relay.feed_audio(b"\0\0" * 640)
        wait_until(lambda: emu.recording.connections == 2, 10, "a second connection")
        wait_until(lambda: [t.text for t in relay.transcript] == ["Resumed"], 10)
        setups = emu.recording.setups
        assert "handle" not in str(setups[0].get("sessionResumption", {}))
        resumption = setups[1].get("sessionResumption") or setups[1].get("session_resumption")
        assert resumption == {"handle": "resume-me"}
        states = [s for s, _ in sink.states]
        assert states[:4] == [
            RelayState.CONNECTING,
            RelayState.LIVE,
            RelayState.RECONNECTING,
            RelayState.LIVE,
        ]
    finally:
        relay.close()


async def test_a_bad_key_is_recognised_whatever_the_close_code() -> None:
    error = gemini.to_live_error(
        gemini.errors.APIError(1008, {"message": "API key not valid. Please pass a valid API key."})
    )
    assert error.fatal
    assert error.message == "API key not valid: set GEMINI_API_KEY or pass client=."


async def test_the_key_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    async with LiveEmulator() as emu:
        client = gemini.client_for_emulator(emu.url, emu.cafile)
        client._api_client.api_key = SECRET
        with caplog.at_level(logging.DEBUG):
            async with gemini.connector(client)(SessionConfig(), None) as session:
                await session.send_text("hello")
    handshake = [r for r in caplog.records if r.name == "websockets.client"]
    assert any("x-goog-api-key" in r.getMessage() for r in handshake)  # the header was logged
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def answer(session, text: str) -> str:  # type: ignore[no-untyped-def]
    """Send ``text``; return the model's transcribed answer once its turn completes."""
    await session.send_text(text)
    pieces = []
    async for message in session.receive():
        pieces.append(message.output_transcription)
        if message.turn_complete:
            return "".join(pieces)
    raise AssertionError("the session ended before the answer")


async def test_the_emulator_answers_by_the_instruction_and_its_updates() -> None:
    from google.genai import types

    async with LiveEmulator() as emu:
        connect = gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile))
        config = SessionConfig(system_instruction='Start every answer with "Ahoy!"')
        async with connect(config, None) as session:
            assert (await answer(session, "hello")).startswith("Ahoy! You wrote: hello.")
            raw = session._session  # the SDK session: swap the instruction mid-session
            await raw.send_context_update(
                system_instruction=types.Content(
                    parts=[types.Part(text='Start every answer with "Bonjour!"')]
                )
            )
            assert (await answer(session, "again")).startswith("Bonjour! You wrote: again.")
