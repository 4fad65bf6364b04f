"""``./dev smoke`` against the local emulator, the capture it writes, and replaying that
capture through the emulator into the product again.

One smoke session (about 25 s) serves the first tests: it runs with a fake API key shaped
like a Google one, so the capture can be searched for it."""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench import smoke
from screenshare_widget import gemini
from screenshare_widget.backend import LiveError
from screenshare_widget.config import SessionConfig
from screenshare_widget.emulator import LiveEmulator
from screenshare_widget.emulator.replay import (
    CLIENT_FILE,
    SERVER_FILE,
    Capture,
    Close,
    Line,
    Replay,
    load_capture,
    replay_emulator,
    write_lines,
)

from .fakes import EmulatorProcess, emulator_process
from .media import silence_pcm

#: The replay plays the capture this much faster than it was recorded.
REPLAY_SPEED = 4.0


def fake_key() -> str:
    """A random key in the shape of a Google API key (the emulator takes any key)."""
    alphabet = string.ascii_letters + string.digits
    return "AIzaSy" + "".join(secrets.choice(alphabet) for _ in range(33))


@dataclass(frozen=True)
class Smoked:
    result: smoke.SmokeResult
    key: str


def run_on(emulator: LiveEmulator, out: Path, key: str) -> smoke.SmokeResult:
    emulator.start_in_thread()
    try:
        client = smoke.emulator_client(emulator, api_key=key)
        return smoke.run_smoke(client, out=out, emulated=True, backend="test emulator")
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def smoked(tmp_path_factory: pytest.TempPathFactory) -> Smoked:
    key = fake_key()
    out = tmp_path_factory.mktemp("smoke") / "capture"
    return Smoked(run_on(smoke.fast_emulator(), out, key), key)


def messages(lines: tuple[Line, ...]) -> list[Any]:
    return [line.message for line in lines if line.message is not None]


def kinds(connection_lines: tuple[Line, ...]) -> list[str]:
    """The client's message kinds, with each text typed and the realtime media left out."""
    out = []
    for message in messages(connection_lines):
        kind = next(iter(message))
        body = message[kind]
        if kind == "realtime_input" and "text" in body:
            out.append(f"text {body['text']}")
        elif kind != "realtime_input":
            out.append(kind)
    return out


def test_every_feature_passes_on_the_emulator_and_the_capture_is_written(
    smoked: Smoked,
) -> None:
    result = smoked.result
    assert [f.name for f in result.features] == list(smoke.FEATURES)
    assert result.passed, [f for f in result.features if not f.passed]
    folder = result.folder
    for name in (CLIENT_FILE, SERVER_FILE, smoke.RESULTS_FILE, smoke.README_FILE):
        assert (folder / name).stat().st_size > 0, name
    results = json.loads((folder / smoke.RESULTS_FILE).read_text())
    assert results["passed"] is True
    assert list(results["features"]) == list(smoke.FEATURES)
    assert all(f["passed"] for f in results["features"].values())
    capture = load_capture(folder)
    first, second = capture.connections  # the forced reconnect made the second
    assert messages(first.server)[0] == {"setupComplete": {}}
    assert first.close is not None and (first.close.code, first.close.by) == (1006, "client")
    assert second.setup is not None and second.setup["sessionResumption"]["handle"]
    assert first.client[0].url is not None and "BidiGenerateContent" in first.client[0].url
    # Everything the session sent is there: the question spoken, the frame, the texts, the
    # tool's answer and the new instruction.
    realtime = [m["realtime_input"] for m in messages(first.client) if "realtime_input" in m]
    assert sum("audio" in m for m in realtime) >= 30  # 100 ms chunks of the spoken question
    assert sum("video" in m for m in realtime) == 1
    assert kinds(first.client) == [
        "setup",
        "text Hello! In one short sentence: what is two plus two?",
        "text What do you see on my screen? One short sentence.",
        "text call get_time tz=UTC",
        "tool_response",
        "contextUpdate",
        "text Say hello in three words.",
    ]
    assert kinds(second.client) == ["setup", "text Are you still there?"]
    # Server messages are kept whole: the answers' audio is in them.
    audio = [m for m in messages(first.server) if "modelTurn" in m.get("serverContent", {})]
    assert len(audio) > 20
    assert results["handovers"][-1]["resumed"] is True


def test_the_api_key_never_reaches_the_capture(smoked: Smoked) -> None:
    files = sorted(smoked.result.folder.iterdir())
    assert len(files) == 4
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert smoked.key not in text, path.name
        assert smoked.key[:12] not in text, path.name


def test_the_key_is_removed_wherever_it_appears(tmp_path: Path) -> None:
    """A key in the URL (as browsers send it), in messages both ways, in a close reason and
    in the results is replaced by "[api key]"."""
    key = fake_key()
    capture = smoke.WireCapture()
    frames = [
        gemini.WireFrame(0, "open", 1.0, url=f"wss://host/ws/x?key={key}"),
        gemini.WireFrame(0, "sent", 1.1, data=json.dumps({"setup": {"note": key}})),
        gemini.WireFrame(0, "received", 1.2, data=json.dumps({"echo": key}).encode(), binary=True),
        gemini.WireFrame(0, "closed", 1.3, code=1007, reason=f"bad key {key}", by="server"),
    ]
    for frame in frames:
        capture(frame)
    smoke.write_folder(tmp_path, capture, {"passed": False, "detail": f"key={key}"}, secret=key)
    for name in (CLIENT_FILE, SERVER_FILE, smoke.RESULTS_FILE):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert key not in text, name
        assert smoke.REDACTED in text, name
    lines = load_capture(tmp_path).connections[0]
    assert lines.client[0].t == 0.0 and lines.client[1].message == {"setup": {"note": "[api key]"}}
    assert lines.close is not None and lines.close.code == 1007


def test_a_replayed_capture_gives_the_product_the_same_session(
    smoked: Smoked, tmp_path: Path
) -> None:
    emulator = replay_emulator(smoked.result.folder, speed=REPLAY_SPEED)
    assert isinstance(emulator.script, Replay)
    replayed = run_on(emulator, tmp_path / "replayed", smoked.key)

    assert [(f.name, f.passed) for f in replayed.features] == [
        (f.name, f.passed) for f in smoked.result.features
    ]
    assert replayed.passed
    assert emulator.script.problems == []
    assert emulator.script.served == 2
    recorded, again = load_capture(smoked.result.folder), load_capture(replayed.folder)
    assert len(again.connections) == len(recorded.connections) == 2
    for old, new in zip(recorded.connections, again.connections, strict=True):
        # The product got exactly the recorded server messages, in order...
        assert messages(new.server) == messages(old.server)
        # ...and sent the same setup (the same resumption handle), texts and answers.
        assert new.setup == old.setup
        assert kinds(new.client) == kinds(old.client)
        assert new.close == old.close
    # The answers are the recorded ones, word for word.
    answers = [json.loads((c.folder / smoke.RESULTS_FILE).read_text())["transcript"]
               for c in (recorded, again)]  # fmt: skip
    assert [t["text"] for t in answers[1]] == [t["text"] for t in answers[0]]


# ---- the replay on its own -------------------------------------------------------------------


def write_capture(folder: Path, client: list[Line], server: list[Line]) -> Capture:
    folder.mkdir(exist_ok=True)
    write_lines(folder / CLIENT_FILE, client)
    write_lines(folder / SERVER_FILE, server)
    return load_capture(folder)


def answer(text: str) -> dict[str, Any]:
    return {"serverContent": {"outputTranscription": {"text": text}}}


DONE: dict[str, Any] = {"serverContent": {"turnComplete": True}}


async def test_a_recorded_message_waits_for_what_the_client_sent_before_it(
    tmp_path: Path,
) -> None:
    """The answer waits for the typed text and the voiced audio that preceded it; the
    recorded close (1011) ends the connection; a connection too many is refused."""
    from .media import tone_pcm

    setup = {"setup": {"model": "models/gemini-3.8-live"}}
    capture = write_capture(
        tmp_path,
        client=[
            Line(0, 0.0, url="wss://example/ws"),
            Line(0, 0.01, message=setup),
            Line(0, 0.5, message={"realtime_input": {"text": "hi"}}),
        ],
        server=[
            Line(0, 0.02, message={"setupComplete": {}}, binary=True),
            Line(0, 0.6, message=answer("hello"), binary=True),
            Line(0, 0.7, message=DONE, binary=True),
            Line(0, 0.8, close=Close(1011, "Internal error occurred.", "server")),
        ],
    )
    (step_complete, step_answer, step_done) = capture.connections[0].steps
    assert step_complete.need.texts == 0 and step_answer.need.texts == 1
    assert step_done.need.texts == 1 and step_answer.need_t == 0.5
    replay = Replay(capture, speed=4.0)
    async with LiveEmulator(
        script=replay, auto_setup_complete=False, session_resumption_handles=False
    ) as emulator:
        connect = gemini.connector(gemini.client_for_emulator(emulator.url, emulator.cafile))
        async with connect(SessionConfig(), None) as session:
            # Audio is no text: the answer stays put.
            await session.send_audio(tone_pcm(0.2) + silence_pcm(0.2))
            await session.send_text("hi")
            got: list[str] = []

            async def read() -> None:
                async for message in session.receive():
                    got.append(message.output_transcription)

            with pytest.raises(LiveError) as ended:
                await read()
            assert ended.value.code == 1011
        assert "hello" in got
        sent = {m.keys: m.t for m in emulator.traffic.sent}
        text_at = next(m.t for m in emulator.traffic.messages if m.summary.get("text"))
        assert sent[("serverContent", "outputTranscription")] >= text_at
        # The capture has one connection; a second is closed during its setup.
        with pytest.raises(LiveError) as refused:
            async with connect(SessionConfig(), None):
                pass
        assert refused.value.code == 1011
    assert replay.served == 2
    assert replay.problems[-1] == "connection 1 is not in the capture"


def test_voiced_audio_paces_a_reply_and_silence_does_not(tmp_path: Path) -> None:
    import base64

    from .media import tone_pcm

    def audio(pcm: bytes) -> dict[str, Any]:
        return {"realtime_input": {"audio": {"data": base64.b64encode(pcm).decode(),
                                             "mime_type": "audio/pcm;rate=16000"}}}  # fmt: skip

    capture = write_capture(
        tmp_path,
        client=[
            Line(0, 0.0, message={"setup": {}}),
            Line(0, 0.1, message=audio(silence_pcm(1.0))),
            Line(0, 1.1, message=audio(tone_pcm(1.0))),
            Line(0, 2.1, message=audio(silence_pcm(1.0))),
        ],
        server=[Line(0, 3.0, message=answer("you spoke"), binary=True)],
    )
    (step,) = capture.connections[0].steps
    assert step.need.voiced_s == pytest.approx(1.0)
    assert step.need_t == 1.1  # the voiced chunk completed the wait, not the silence after


# ---- the wire tap ----------------------------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    """The emulator in its own process, so this process's allocations are the client's."""
    with emulator_process() as server:
        yield server


def test_the_wire_tap_copies_no_audio(emulator: EmulatorProcess) -> None:
    """Sending 10 s of audio at once (about 430 kB of JSON) allocates no more with the wire
    tap than without: the frame it reports is the SDK's own string."""
    client = gemini.client_for_emulator(emulator.url, emulator.cafile)
    pcm = silence_pcm(10.0)
    seen: list[gemini.WireFrame] = []

    async def peak(wired: bool) -> int:
        connect = gemini.connector(client, wire=seen.append if wired else None)
        async with connect(SessionConfig(), None) as session:
            await session.send_audio(pcm[:3200])  # warm up the SDK's paths
            tracemalloc.start()
            try:
                await session.send_audio(pcm)
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    without = asyncio.run(peak(False))
    with_tap = asyncio.run(peak(True))
    sent = [f for f in seen if f.kind == "sent" and len(f.data) > len(pcm)]
    assert len(sent) == 1 and isinstance(sent[0].data, str)
    message_bytes = len(sent[0].data)
    assert without > message_bytes  # the SDK's own copies are measured...
    assert with_tap - without < message_bytes / 10  # ...and the tap adds none of its own
