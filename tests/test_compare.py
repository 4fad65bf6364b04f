"""Record a session against the emulator through the real SDK, then replay it into one
fresh session per instruction variant and compare the answers side by side."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from screenshare_widget import compare, gemini
from screenshare_widget.backend import LiveSession
from screenshare_widget.compare import (
    CHUNK_S,
    TAIL_SILENCE_S,
    Variant,
    _schedule,
    acompare,
    replay,
)
from screenshare_widget.config import SessionConfig
from screenshare_widget.emulator import DefaultResponder, LiveEmulator
from screenshare_widget.recording import Recorder, Recording
from screenshare_widget.relay import Relay, RelayState
from screenshare_widget.timings import Timings

from .conftest import wait_until
from .fakes import FakeBackend, RecordingSink, closing_after
from .media import fake_jpeg, silence_pcm, speech_pcm

pytestmark = pytest.mark.timeout(120)

VARIANTS = {
    "terse": 'Start every answer with "Short:"',
    "chatty": 'Start every answer with "Well, let me see:"',
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[LiveEmulator]:
    # Fast speech keeps the answers (and the test) short.
    emu = LiveEmulator(responder=DefaultResponder(wpm=400, pace=8.0)).start_in_thread()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def take(emulator: LiveEmulator, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """A recorded session: a spoken question with a frame, its answer, then a typed one."""
    client = gemini.client_for_emulator(emulator.url, emulator.cafile)
    relay = Relay(gemini.connector(client), SessionConfig(), RecordingSink())
    folder = tmp_path_factory.mktemp("recordings") / "take"
    try:
        relay.start()
        wait_until(lambda: relay.state is RelayState.LIVE, 10)
        meta = {"model": "gemini-3.8-live", "voice": "Puck", "system_instruction": "x"}
        recorder = Recorder(folder, meta=meta, turns=relay.transcript.snapshot)
        relay.tap = recorder
        relay.feed_frame(fake_jpeg(320, 200, b"screen"), 320, 200)
        speech = silence_pcm(0.2) + speech_pcm("What do you see?") + silence_pcm(1.0)
        for i in range(0, len(speech), 1280):  # in real time, as the page sends it
            relay.feed_audio(speech[i : i + 1280])
            time.sleep(CHUNK_S)
        wait_until(lambda: relay.at_rest() and len(relay.transcript) >= 2, 30, "an answer")
        relay.say("What is in the frame?").result(5)
        wait_until(lambda: relay.at_rest() and len(relay.transcript) >= 4, 30, "an answer")
        return recorder.stop()
    finally:
        relay.close()


def test_the_recording_holds_the_timed_prompts(take: Recording) -> None:
    kinds = [e["kind"] for e in take.events]
    assert kinds.count("speech_start") == 1 and kinds.count("text") == 1
    assert [t.text for t in take.texts] == ["What is in the frame?"]
    assert [(f.width, f.height) for f in take.frames] == [(320, 200)]
    spoken = next(e["t"] for e in take.events if e["kind"] == "speech_start")
    typed = take.texts[0].t
    assert 0.1 < spoken < 0.6 and typed > spoken + 1
    assert take.duration_s >= typed


def test_compare_answers_each_prompt_per_variant_side_by_side(
    emulator: LiveEmulator, take: Recording
) -> None:
    client = gemini.client_for_emulator(emulator.url, emulator.cafile)
    before = len(emulator.traffic.setups)
    df = compare(take.path, VARIANTS, client=client, speed=4.0)
    print(df.to_string())  # the table, for the log

    assert list(df.columns) == [
        ("user", "said"),
        ("terse", "reply"), ("terse", "latency_s"), ("terse", "tokens"),
        ("chatty", "reply"), ("chatty", "latency_s"), ("chatty", "tokens"),
    ]  # fmt: skip
    assert df.index.tolist() == [1, 2]
    said = df[("user", "said")].tolist()
    assert said[0].startswith("(spoke for") and said[1] == "What is in the frame?"
    for label, prefix in (("terse", "Short:"), ("chatty", "Well, let me see:")):
        replies = df[(label, "reply")].tolist()
        assert all(r.startswith(prefix) for r in replies), replies
        assert "320 by 200 pixels" in replies[0]  # the replayed frame reached the model
        assert replies[1].startswith(f"{prefix} You wrote: What is in the frame?")
        latency = df[(label, "latency_s")].tolist()
        assert all(0 < x < 10 for x in latency), latency
        assert all(t > 0 for t in df[(label, "tokens")]), df[(label, "tokens")]
        summary = df.attrs["variants"][label]
        assert summary["instruction"] == VARIANTS[label] and summary["answers"] == 2
        assert summary["error"] == "" and summary["total_tokens"] >= df[(label, "tokens")].sum()
    # One fresh session per variant, each set up with its own instruction.
    setups = emulator.traffic.setups[before:]
    instructions = sorted(
        str(s.get("systemInstruction") or s.get("system_instruction")) for s in setups
    )
    assert len(setups) == 2
    assert all(any(v in i for i in instructions) for v in ("Short:", "Well, let me see:"))


def test_every_variant_runs_on_the_callers_loop(emulator: LiveEmulator, take: Recording) -> None:
    """No thread per variant: each variant's conversation runs on the loop that awaits
    acompare (and nothing polls a relay thread's state from another thread)."""
    real = gemini.connector(gemini.client_for_emulator(emulator.url, emulator.cafile))
    seen: list[tuple[threading.Thread, asyncio.AbstractEventLoop]] = []

    @asynccontextmanager
    async def connect(config: SessionConfig, handle: str | None) -> AsyncIterator[LiveSession]:
        seen.append((threading.current_thread(), asyncio.get_running_loop()))
        async with real(config, handle) as session:
            yield session

    async def run() -> tuple[pd.DataFrame, threading.Thread, asyncio.AbstractEventLoop]:
        df = await acompare(take, VARIANTS, speed=8.0, _connector=connect)
        return df, threading.current_thread(), asyncio.get_running_loop()

    df, thread, loop = asyncio.run(run())
    assert len(seen) == 2
    assert all(t is thread and running is loop for t, running in seen), seen
    assert [v["error"] for v in df.attrs["variants"].values()] == ["", ""]


def test_a_failing_variant_says_why_and_the_others_still_answer(
    emulator: LiveEmulator, take: Recording
) -> None:
    client = gemini.client_for_emulator(emulator.url, emulator.cafile)

    async def run() -> pd.DataFrame:
        return await acompare(take, ["Short answers."], client=client, model="gemini-9-nope",
                              speed=8.0)  # fmt: skip

    df = asyncio.run(run())
    summary = df.attrs["variants"]["A"]
    assert "gemini-9-nope" in summary["error"] and summary["answers"] == 0
    assert df.empty


@pytest.mark.parametrize(
    ("instructions", "error"),
    [("one string", TypeError), ([], ValueError), ({"user": "x"}, ValueError), ([3], TypeError)],
)
def test_bad_arguments_get_clear_errors(
    take: Recording, instructions: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        compare(take, instructions)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="speed"):
        compare(take, ["a"], speed=0)


def test_the_schedule_sends_audio_once_spoken_and_keeps_the_recorded_times(
    take: Recording, tmp_path: Path
) -> None:
    items = _schedule(take)
    times = [t for t, _, _ in items]
    assert times == sorted(times)
    audio = [(t, p) for t, k, p in items if k == "audio"]
    assert audio[0][0] == pytest.approx(CHUNK_S)
    total = len(take.mic) / 32_000 + TAIL_SILENCE_S
    assert audio[-1][0] == pytest.approx(total, abs=CHUNK_S)
    assert b"".join(p for _, p in audio).startswith(take.mic)  # type: ignore[arg-type]
    assert [t for t, k, _ in items if k == "text"] == [take.texts[0].t]
    assert not math.isnan(take.duration_s)


def test_a_variant_whose_session_close_hangs_leaves_no_task_on_the_callers_loop() -> None:
    """The stop waits at most ``close_timeout_s`` for the session to close; a close that
    hangs past it is cancelled, so nothing of the variant stays on the caller's loop."""
    backend = FakeBackend()
    hung = asyncio.Event()  # never set: the close hangs

    connect = closing_after(backend, hung.wait)

    empty = Recording(Path("."), datetime.now(UTC), "", "", "", b"", (), (), (), ())

    async def run() -> tuple[Variant, set[asyncio.Task[object]]]:
        timings = Timings(close_timeout_s=0.1)
        async with asyncio.timeout(30):
            variant = await replay(empty, connect, SessionConfig(), speed=100.0, timings=timings)
        mine = asyncio.current_task()
        left = {task for task in asyncio.all_tasks() if task is not mine}
        if left:
            await asyncio.wait(left, timeout=1.0)  # what was cancelled gets to end
        return variant, {task for task in left if not task.done()}

    variant, left = asyncio.run(run())
    assert variant.error == ""
    assert left == set(), left
    assert len(backend.sessions) == 1 and backend.sessions[0].closed
