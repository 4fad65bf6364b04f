"""Recording a session into a folder and loading it back, through the relay's tap."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import wave
from pathlib import Path

import pytest

from screenshare_widget import recording, wav
from screenshare_widget.backend import ServerMessage
from screenshare_widget.recording import Recorder, Recording
from screenshare_widget.relay import Relay

from .conftest import wait_until
from .fakes import FakeBackend, live, push
from .media import fake_jpeg, silence_pcm, tone_pcm

META = {"model": "gemini-3.8-live", "voice": "Puck", "system_instruction": "be brief"}


def recorder_on(relay: Relay, folder: Path, flush_every_s: float = 1.0) -> Recorder:
    recorder = Recorder(
        folder, meta=META, turns=relay.transcript.snapshot, flush_every_s=flush_every_s
    )
    relay.tap = recorder
    return recorder


def test_a_session_round_trips_through_its_folder(
    relay: Relay, backend: FakeBackend, tmp_path: Path
) -> None:
    session = live(relay, backend)
    recorder = recorder_on(relay, tmp_path / "take")
    voice = tone_pcm(0.4)
    for i in range(0, len(voice), 1280):
        relay.feed_audio(voice[i : i + 1280])
    relay.feed_frame(fake_jpeg(64, 48, b"one"), 64, 48)
    wait_until(lambda: relay.counters.frames_sent == 1)
    relay.say("typed question").result(5)
    wait_until(lambda: session.texts)
    push(relay, session, ServerMessage(audio=b"\x01\x00" * 2400, output_transcription="Hi."))
    push(relay, session, ServerMessage(turn_complete=True))
    wait_until(lambda: relay.transcript[-1].done and relay.transcript[-1].role == "model")

    loaded = recorder.stop()
    assert recorder.stopped and recorder.stop() is loaded  # stopping twice is harmless
    assert loaded == Recording.load(tmp_path / "take")
    assert (loaded.model, loaded.voice, loaded.system_instruction) == (
        "gemini-3.8-live",
        "Puck",
        "be brief",
    )
    assert loaded.mic == voice  # chunks fed at once: no gap to fill
    assert [(f.jpeg, f.width, f.height) for f in loaded.frames] == [
        (fake_jpeg(64, 48, b"one"), 64, 48)
    ]
    assert [t.text for t in loaded.texts] == ["typed question"]
    assert [t.text for t in loaded.turns] == ["typed question", "Hi."]
    kinds = [e["kind"] for e in loaded.events]
    assert {"speech_start", "frame_sent", "text", "first_audio", "turn_complete"} <= set(kinds)
    assert all(0 <= e["t"] < 10 for e in loaded.events)
    with wave.open(str(tmp_path / "take" / "model.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (24_000, 1, 2400)
    assert loaded.to_pandas()["kind"].tolist() == kinds
    assert "Recording(" in repr(loaded)


def test_a_pause_in_the_audio_is_kept_as_silence(
    relay: Relay, backend: FakeBackend, tmp_path: Path
) -> None:
    live(relay, backend)
    now = [0.0]  # the recorder's clock (s), moved by hand
    recorder = Recorder(
        tmp_path / "take", meta=META, turns=relay.transcript.snapshot, monotonic=lambda: now[0]
    )
    relay.tap = recorder
    now[0] = 0.04
    relay.feed_audio(tone_pcm(0.04))
    wait_until(lambda: any(e.kind == "speech_start" for e in relay.events))  # (after the tap)
    now[0] += 0.8  # sharing paused: no audio arrives for 0.8 s
    relay.feed_audio(tone_pcm(0.04))
    wait_until(lambda: relay.counters.audio_chunks_in == 2)
    relay.run_coroutine(asyncio.sleep(0)).result(2)  # the loop finished with that chunk
    loaded = recorder.stop()
    seconds = len(loaded.mic) / 32_000
    assert 0.75 <= seconds <= 1.0, seconds  # two 40 ms chunks around ~0.8 s of silence
    assert loaded.mic.startswith(tone_pcm(0.04)) and loaded.mic.endswith(tone_pcm(0.04))
    assert silence_pcm(0.5) in loaded.mic


def test_files_are_readable_while_recording(
    relay: Relay, backend: FakeBackend, tmp_path: Path
) -> None:
    live(relay, backend)
    recorder = recorder_on(relay, tmp_path / "take", flush_every_s=0.0)
    relay.feed_audio(tone_pcm(0.1))
    wait_until(lambda: any(e.kind == "speech_start" for e in relay.events))
    relay.feed_audio(silence_pcm(0.04))  # the next write flushes
    wait_until(lambda: relay.counters.audio_chunks_in == 2)

    def frames_written() -> int:
        with wave.open(str(tmp_path / "take" / "mic.wav")) as w:
            return w.getnframes()

    wait_until(lambda: frames_written() == 1600 + 640)  # written on the recorder's thread
    lines = (tmp_path / "take" / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "recording"
    assert json.loads(lines[1])["kind"] == "speech_start"
    recorder.stop()


def test_refuses_a_folder_with_files_and_a_folder_that_is_not_a_recording(
    tmp_path: Path,
) -> None:
    (tmp_path / "old.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        Recorder(tmp_path, meta=META)
    assert (tmp_path / "old.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="has no events.jsonl"):
        Recording.load(tmp_path)
    (tmp_path / "events.jsonl").write_text('{"kind": "speech_start", "t": 0}\n')
    with pytest.raises(ValueError, match="recording header"):
        Recording.load(tmp_path)


def test_a_broken_line_or_a_missing_frame_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(tmp_path / "take", meta=META)
    recorder.stop()
    events = tmp_path / "take" / "events.jsonl"
    with events.open("a") as out:
        out.write("{not json\n")
        out.write('{"t": 1.0, "kind": "frame_sent", "file": "frames/000009.jpg"}\n')
        out.write('{"t": 2.0, "kind": "text", "text": "hello"}\n')
    loaded = Recording.load(tmp_path / "take")
    assert loaded.frames == () and [t.text for t in loaded.texts] == ["hello"]
    assert "line 2 is not JSON" in caplog.text and "000009.jpg is missing" in caplog.text
    assert loaded.duration_s == 2.0


def test_files_are_written_off_the_relay_thread(
    relay: Relay, backend: FakeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay's loop only queues what to write: a slow disk never stalls the session."""
    writers: set[str] = set()
    write = wav.WavWriter.write

    def noting(self: wav.WavWriter, pcm: bytes) -> None:
        writers.add(threading.current_thread().name)
        write(self, pcm)

    monkeypatch.setattr(wav.WavWriter, "write", noting)
    session = live(relay, backend)
    recorder = recorder_on(relay, tmp_path / "take")
    relay.feed_audio(tone_pcm(0.1))
    push(relay, session, ServerMessage(audio=b"\x01\x00" * 240))
    wait_until(lambda: relay.counters.audio_chunks_out == 1)
    loaded = recorder.stop()
    assert loaded.mic == tone_pcm(0.1)
    assert writers and "test-relay" not in writers, writers


def _hold_the_first_write(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event]:
    """Make the recorder's first WAV write wait for the second event; the first says it
    began."""
    began, release = threading.Event(), threading.Event()
    write = wav.WavWriter.write

    def held(self: wav.WavWriter, pcm: bytes) -> None:
        if not began.is_set():
            began.set()
            release.wait(10)
        write(self, pcm)

    monkeypatch.setattr(wav.WavWriter, "write", held)
    return began, release


def test_a_slow_disk_within_the_stop_timeout_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    began, release = _hold_the_first_write(monkeypatch)
    recorder = Recorder(tmp_path / "take", meta=META)
    for _ in range(5):
        recorder.on_mic(tone_pcm(0.04))
    assert began.wait(5)
    threading.Timer(0.3, release.set).start()  # the disk answers while stop() waits
    loaded = recorder.stop()
    assert loaded.mic == tone_pcm(0.04) * 5 and recorder.dropped == 0
    assert not recorder._writer.is_alive()


def test_a_stuck_disk_at_stop_drops_the_rest_and_the_writer_then_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first write is held past stop()'s wait: stop() returns, the writes still queued
    are dropped (counted, one warning) rather than failing one by one on closed files, and
    the writer finishes the files once that write returns, then ends."""
    monkeypatch.setattr(recording, "STOP_TIMEOUT_S", 0.2)
    monkeypatch.setattr(recording, "FINISH_TIMEOUT_S", 0.05, raising=False)
    began, release = _hold_the_first_write(monkeypatch)
    recorder = Recorder(tmp_path / "take", meta=META)
    for _ in range(5):
        recorder.on_mic(tone_pcm(0.04))
    assert began.wait(5)
    timer = threading.Timer(1.0, release.set)  # the disk answers, long after the timeout
    timer.start()
    with caplog.at_level(logging.WARNING, logger="screenshare_widget"):
        recorder.stop()
        assert recorder.stopped and recorder.dropped == 4
        timer.join(5)
        recorder._writer.join(5)
        assert not recorder._writer.is_alive(), "the writer outlived stop()"
    assert [r.levelname for r in caplog.records] == ["WARNING"] * len(caplog.records)
    assert "4 writes still queued" in caplog.text
    finished = Recording.load(tmp_path / "take")  # the writer finished the files
    assert finished.mic == tone_pcm(0.04)  # the write in progress, and nothing after
    assert (tmp_path / "take" / "transcript.jsonl").is_file()
