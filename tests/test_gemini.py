"""The Gemini adapter with the real SDK against the local emulator over TLS: message
conversion, error sentences, malformed messages, and the relay's handover on goAway."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest
import websockets.asyncio.client
import websockets.asyncio.server
from google import genai
from google.genai import errors, types
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response
from websockets.protocol import State

from screenshare_widget import gemini
from screenshare_widget.backend import LiveError, ServerMessage
from screenshare_widget.config import SessionConfig
from screenshare_widget.emulator import EmulatorConnection, Fault, LiveEmulator, Realism
from screenshare_widget.relay import Relay, RelayState

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

    # Exact control of every message: the idealised emulator (no {} between them, and
    # messages after the goAway).
    async with LiveEmulator(
        script=script, session_resumption_handles=False, realism=Realism.ideal()
    ) as emu:
        connect = gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile))
        async with connect(SessionConfig(), None) as session:
            await session.send_audio(b"\0\0" * 640)
            await session.send_frame(b"\xff\xd8\xff\xd9")
            await session.send_text("hi")
            with caplog.at_level(logging.WARNING, logger="screenshare_widget"):
                got = await collect(session, 9)
        rec = emu.traffic
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
        (
            (1008, "Operation is not implemented, or supported, or enabled."),
            1008,
            False,
            "as it sometimes does around tool calls: a new connection resumes the session.",
        ),
        (
            (1011, "Deadline expired before operation could complete."),
            1011,
            False,
            "reached its 10-minute lifetime",
        ),
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
        wait_until(lambda: emu.traffic.connections == 2, 10, "a second connection")
        wait_until(lambda: [t.text for t in relay.transcript] == ["Resumed"], 10)
        setups = emu.traffic.setups
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


# ---- the close table -------------------------------------------------------------------------

SETTINGS = ("model", "voice", "media_resolution", "tools")
UNKNOWN_MODEL = (
    "models/gemini-0.1-nonsense is not found for API version v1beta, or is not supported "
    "for bidiGenerateContent. Call"
)

#: (code, reason, fatal, blames, words the sentence must hold): every close the research
#: notes list, and the emulator's own.
CLOSES = [
    (1000, "", False, (), ["ended the connection (1000)", "resumes the session"]),
    (1000, "Connection lifetime reached.", False, (), ["time limit", "resumes the session"]),
    (
        1000,
        "The operation was cancelled.",
        False,
        (),
        ["time limit", "Vertex AI", "10 minutes", "resumes the session"],
    ),
    (1006, "Abnormal closure.", False, (), ["dropped (1006)", "resumes", "network"]),
    (
        1007,
        "Request contains an invalid argument.",
        True,
        SETTINGS,
        ["rejected the session settings", "remove options the model does not support"],
    ),
    (1007, "Invalid JSON payload received.", False, (), ["could not read", "update"]),
    (
        1007,
        "API key not valid. Please pass a valid API key.",
        True,
        (),
        ["API key not valid", "set GEMINI_API_KEY", "client="],
    ),
    (
        1007,
        "API key expired. Please renew the API key.",
        True,
        (),
        ["has expired", "create a new key", "AI Studio", "set GEMINI_API_KEY"],
    ),
    (
        1008,
        UNKNOWN_MODEL,
        True,
        ("model",),
        ["gemini-0.1-nonsense is not available", "pass model="],
    ),
    (
        1008,
        "Session resumption handle is invalid or expired.",
        False,
        (),
        ["resumption handle", "a new session starts"],
    ),
    (
        1008,
        "Operation is not implemented, or supported, or enabled.",
        False,
        (),
        ["dropped the connection", "around tool calls", "resumes the session"],
    ),
    (1008, "Policy violation.", False, (), ["policy reason", "resumes", "check the model"]),
    (
        1011,
        "Deadline expired before operation could complete.",
        False,
        (),
        ["10-minute lifetime", "resumes the session"],
    ),
    (1011, "Internal error occurred.", False, (), ["internal error", "try again later"]),
    (1011, "Internal error encountered", False, (), ["internal error", "try again later"]),
    (1011, "keepalive ping timeout", False, (), ["keepalive pings", "network"]),
    (
        1011,
        "You exceeded your current quota, please check your plan and billing details.",
        False,
        (),
        ["quota is used up", "wait a minute", "plan and billing"],
    ),
    (1011, "", False, (), ["failed (1011)", "try again later"]),
    (1012, "Service restart", False, (), ["restarting or busy", "try again later"]),
    (1013, "Try again later", False, (), ["restarting or busy", "try again later"]),
    (1001, "going away", False, (), ["closed the connection (1001: going away)", "resumes"]),
]


@pytest.mark.parametrize(("code", "reason", "fatal", "blames", "words"), CLOSES)
def test_every_close_has_its_outcome_and_a_sentence_with_the_fix(
    code: int, reason: str, fatal: bool, blames: tuple[str, ...], words: list[str]
) -> None:
    error = gemini.close_outcome(code, reason, model="gemini-0.1-nonsense")
    assert (error.code, error.reason, error.fatal, error.blames) == (code, reason, fatal, blames)
    for word in words:
        assert word in error.message
    assert error.message.endswith(".")
    if reason and code not in (1006, 1008) and "API key not valid" not in reason:
        assert f"({code}: {reason})" in error.message  # the service's words, as it said them
    # The SDK's APIError (a close during connect() or receive()) and websockets'
    # ConnectionClosed (a close seen by a send or a ping) read the same.
    via_sdk = gemini.to_live_error(errors.APIError(code, reason), model="gemini-0.1-nonsense")
    via_socket = gemini.to_live_error(
        ConnectionClosedError(Close(code, reason), None), model="gemini-0.1-nonsense"
    )
    for other in (via_sdk, via_socket):
        assert (other.message, other.code, other.fatal, other.blames) == (
            error.message,
            code,
            fatal,
            blames,
        )


def test_an_expired_key_asks_for_a_new_key_not_for_fewer_options() -> None:
    error = gemini.close_outcome(1007, "API key expired. Please renew the API key.")
    assert error.fatal
    assert error.blames == ()  # no setting of the assistant mends it
    assert "remove options" not in error.message
    assert error.message == (
        "The API key has expired (1007: API key expired. Please renew the API key.): create a "
        "new key in Google AI Studio (aistudio.google.com/apikey) and set GEMINI_API_KEY to "
        "it, or pass client=."
    )


async def test_an_expired_key_through_the_sdk_is_fatal_with_the_renewal_advice() -> None:
    expired = "API key expired. Please renew the API key."
    async with LiveEmulator(faults=[Fault("reject", code=1007, reason=expired)]) as emu:
        connect = gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile))
        with pytest.raises(LiveError) as caught:
            async with connect(SessionConfig(), None):
                pass
    assert (caught.value.code, caught.value.fatal, caught.value.reason) == (1007, True, expired)
    assert "create a new key in Google AI Studio" in caught.value.message
    assert "remove options" not in caught.value.message


def test_a_close_reason_never_shows_the_key() -> None:
    error = gemini.to_live_error(
        errors.APIError(1011, f"Internal error occurred for {SECRET}."), secret=SECRET
    )
    assert SECRET not in f"{error.message} {error.reason}"
    assert "[api key]" in error.reason


def _refusal(status: int, body: bytes = b"") -> InvalidStatus:
    return InvalidStatus(Response(status, "", Headers(), body))


@pytest.mark.parametrize(
    ("status", "fatal", "words"),
    [
        (401, True, ["API key not valid or not allowed (HTTP 401", "set GEMINI_API_KEY"]),
        (403, True, ["API key not valid or not allowed (HTTP 403", "client="]),
        (404, True, ["not found (HTTP 404", "check base_url and api_version"]),
        (429, False, ["quota is exhausted (HTTP 429", "wait a minute"]),
        (503, False, ["unavailable (HTTP 503", "try again later"]),
        (400, True, ["refused the connection (HTTP 400", "check base_url and api_version"]),
        (302, False, ["answered the connection with HTTP 302", "new connection is tried"]),
    ],
)
def test_http_refusals_of_the_upgrade_say_what_to_check(
    status: int, fatal: bool, words: list[str]
) -> None:
    for error in (
        gemini.to_live_error(_refusal(status)),
        gemini.http_outcome(status),
        gemini.to_live_error(errors.APIError(status, {"message": ""})),
    ):
        assert (error.code, error.fatal) == (0, fatal)  # 0: the connection never opened
        for word in words:
            assert word in error.message


def test_an_http_refusal_carries_the_body_message_without_the_key() -> None:
    body = b'{"error": {"code": 403, "message": "Permission denied for ' + SECRET.encode() + b'"}}'
    error = gemini.to_live_error(_refusal(403, body), secret=SECRET)
    assert error.fatal
    assert "Permission denied for [api key]" in error.message
    assert SECRET not in f"{error.message} {error.reason}"


async def test_a_wrong_api_version_is_fatal_and_says_to_check_it() -> None:
    async with LiveEmulator() as emu:
        client = genai.Client(
            api_key=gemini.EMULATOR_KEY,
            http_options=types.HttpOptions(
                base_url=emu.url,
                api_version="v2",
                async_client_args={"ssl": ssl.create_default_context(cafile=emu.cafile)},
            ),
        )
        with pytest.raises(LiveError) as caught:
            async with gemini.connector(client)(SessionConfig(), None):
                pass
    assert caught.value.fatal
    assert "HTTP 404" in caught.value.message
    assert "api_version" in caught.value.message


# ---- the SDK's keepalive ---------------------------------------------------------------------


async def test_sessions_through_the_sdk_have_the_keepalive_pong_timeout_off() -> None:
    async with LiveEmulator() as emu:
        connect = gemini.connector(gemini.client_for_emulator(emu.url, emu.cafile))
        async with connect(SessionConfig(), None) as session:
            ws = session._session._ws  # the websocket the SDK opened
            assert isinstance(ws, websockets.asyncio.client.ClientConnection)
            assert ws.ping_timeout is None  # its pings can no longer close the connection
            assert ws.ping_interval is not None  # they still go, as traffic
            assert ws.keepalive_task is not None and not ws.keepalive_task.done()
            await session.send_text("still open")
            assert ws.state is State.OPEN


#: How late the test server's pongs (and everything else it sends) arrive (s).
PONG_DELAY_S = 0.4
#: A client keepalive much shorter than the delay: a ping every 0.1 s, 0.2 s for its pong.
SHORT_PING_INTERVAL_S = 0.1
SHORT_PING_TIMEOUT_S = 0.2


@asynccontextmanager
async def late_pong_server(delay_s: float) -> AsyncIterator[str]:
    """The URL of an echo server whose bytes reach the client ``delay_s`` late: a TCP relay
    in front of it holds every byte from the server back, in order, so pongs come late."""

    async def echo(ws: websockets.asyncio.server.ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:  # the control test's client fails the connection
            pass

    async def held_back(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while chunk := await reader.read(65536):
                due.put_nowait((loop.time() + delay_s, chunk))
            due.put_nowait((loop.time() + delay_s, b""))

        reading = asyncio.create_task(read())
        try:
            while True:
                at, chunk = await due.get()
                await asyncio.sleep(max(0.0, at - loop.time()))
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
        finally:
            reading.cancel()
            writer.close()

    async def straight(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()

    tasks: set[asyncio.Task[None]] = set()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", echo_port)
        both = [
            asyncio.create_task(straight(client_r, server_w)),
            asyncio.create_task(held_back(server_r, client_w)),
        ]
        tasks.update(both)
        await asyncio.gather(*both, return_exceptions=True)

    async with websockets.asyncio.server.serve(echo, "127.0.0.1", 0, ping_interval=None) as srv:
        echo_port = next(iter(srv.sockets)).getsockname()[1]
        front = await asyncio.start_server(relay, "127.0.0.1", 0)
        try:
            yield f"ws://127.0.0.1:{front.sockets[0].getsockname()[1]}"
        finally:
            for task in tasks:
                task.cancel()
            front.close()


def short_keepalive(url: str) -> websockets.asyncio.client.connect:
    return websockets.asyncio.client.connect(
        url, ping_interval=SHORT_PING_INTERVAL_S, ping_timeout=SHORT_PING_TIMEOUT_S
    )


async def test_late_pongs_close_a_default_keepalive_with_1011() -> None:
    """The control: without relaxing, websockets closes on the late pongs itself."""
    async with late_pong_server(PONG_DELAY_S) as url, short_keepalive(url) as ws:
        with pytest.raises(ConnectionClosed) as caught:
            async with asyncio.timeout(10):
                await ws.recv()
    assert caught.value.sent == Close(1011, "keepalive ping timeout")
    error = gemini.to_live_error(caught.value)
    assert (error.code, error.fatal) == (1011, False)
    assert "did not answer keepalive pings in time" in error.message


async def test_late_pongs_do_not_end_a_gemini_session() -> None:
    async with late_pong_server(PONG_DELAY_S) as url, short_keepalive(url) as ws:
        session = gemini.GeminiSession(SimpleNamespace(_ws=ws), model="m", secret="")
        assert ws.ping_timeout is None
        async with asyncio.timeout(10):
            await session.ping()  # the relay's ping: returns once the late pong is in
            assert ws.latency >= SHORT_PING_TIMEOUT_S  # later than the keepalive allowed
            await ws.send("still here")
            assert await ws.recv() == "still here"  # two more delays: still open
        assert ws.state is State.OPEN
