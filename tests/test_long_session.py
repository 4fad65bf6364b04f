"""A simulated hour: the relay (real SDK) against the emulator with connection lifetimes
shortened to seconds, so an hour's handovers happen in under a minute. Audio and frames
flow in real time the whole way; nothing the user said or heard may be lost or doubled."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from screenshare_widget import gemini
from screenshare_widget.config import SessionConfig
from screenshare_widget.emulator import Lifetimes
from screenshare_widget.relay import Relay, RelayState

from .conftest import wait_until
from .fakes import EmulatorProcess, RecordingSink, emulator_process
from .media import chunks, fake_jpeg, silence_pcm, speech_pcm

#: Each connection lives 12 s and gets a goAway 10 s before its end (the service: 600 s and
#: 60 s); six handovers stand for an hour. The relay must find a turn boundary in the 8 s
#: between the goAway and its deadline (2 s before the end), as it finds one in 58 s live.
#: The audio+video limit is short too: context compression must keep the session going.
LIFETIMES = Lifetimes(connection_s=12.0, go_away_before_s=10.0, av_limit_s=20.0)
#: Exchanges: the user asks (1.9 s), then is silent long enough for the whole answer
#: (about 4.5 s) and a pause; one exchange lasts 10.9 s.
EXCHANGES = 6
PAUSE_S = 9.0
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    """The emulator in its own process, so this process's memory is the relay's alone."""
    args = ("--connection-s", str(LIFETIMES.connection_s),
            "--go-away-before-s", str(LIFETIMES.go_away_before_s),
            "--av-limit-s", str(LIFETIMES.av_limit_s),
            "--wpm", "380")  # brisk answers keep the test short  # fmt: skip
    with emulator_process(*args) as server:
        yield server


@pytest.mark.slow
def test_an_hour_of_handovers_loses_nothing(emulator: EmulatorProcess) -> None:
    sink = RecordingSink()
    connect = gemini.connector(gemini.client_for_emulator(emulator.url, emulator.cafile))
    relay = Relay(connect, SessionConfig(), sink)
    question = speech_pcm("What is on my screen right now?")
    exchange = chunks(question + silence_pcm(PAUSE_S))
    chunk_s = 0.04
    rss: list[float] = []
    stop = threading.Event()

    def microphone_and_screen() -> None:
        """Feed audio in real time (40 ms chunks) and a frame every second."""
        start = time.monotonic()
        sent = 0
        for _ in range(EXCHANGES):
            rss.append(rss_mb())
            for chunk in exchange:
                if stop.is_set():
                    return
                delay = start + sent * chunk_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                relay.feed_audio(chunk)
                if sent % 25 == 0:
                    relay.feed_frame(fake_jpeg(1024, 576, bytes([sent % 256]) * 2000))
                sent += 1

    try:
        relay.start()
        wait_until(lambda: relay.state is RelayState.LIVE, 10)
        feeder = threading.Thread(target=microphone_and_screen, daemon=True)
        feeder.start()
        feeder.join(EXCHANGES * (len(exchange) * chunk_s) + 30)
        assert not feeder.is_alive()
        # The last answer completes.
        wait_until(
            lambda: sum(t.role == "model" and t.done for t in relay.transcript) >= EXCHANGES,
            20,
            f"every answer; so far {relay.transcript.to_markdown()!r}, {relay.handovers}",
        )
        fed = EXCHANGES * sum(len(c) for c in exchange)
        wait_until(lambda: relay.counters.audio_bytes_sent == fed, 5, "the last audio to go out")
        rss.append(rss_mb())
    finally:
        stop.set()
        relay.close()

    turns = relay.transcript.snapshot()
    users = [t for t in turns if t.role == "user"]
    models = [t for t in turns if t.role == "model"]
    handovers = relay.handovers
    gaps = [h.gap_ms for h in handovers if h.gap_ms is not None]
    figures = {
        "handovers": len(handovers),
        "resumed": sum(h.resumed for h in handovers),
        "reasons": sorted({h.reason for h in handovers}),
        "turns": len(turns),
        "largest_gap_ms": round(max(gaps), 1) if gaps else None,
        "rss_mb_per_exchange": [round(r, 1) for r in rss],
        "connections": relay.counters.connections,
        "audio_s_sent": round(relay.counters.audio_bytes_sent / 32_000, 2),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    timeline = sorted(
        [
            (t.started_at.timestamp(), f"{t.role} {t.text[:40]!r} interrupted={t.interrupted}")
            for t in turns
        ]
        + [(h.at.timestamp(), f"handover {h.reason} gap={h.gap_ms}") for h in handovers]
    )
    t0 = timeline[0][0]
    figures["timeline"] = [f"{at - t0:7.2f} {what}" for at, what in timeline]
    (ARTIFACTS / "long-session.json").write_text(json.dumps(figures, indent=2))
    print("simulated hour:", figures)

    # Every question heard once and answered once, in order, nothing cut or doubled.
    assert len(users) == EXCHANGES, [t.text for t in turns]
    assert len(models) == EXCHANGES, [t.text for t in turns]
    assert [t.role for t in turns] == ["user", "model"] * EXCHANGES
    assert all(t.text.startswith("(spoke for") for t in users), [t.text for t in users]
    assert all(t.text.startswith("You spoke for") for t in models), [t.text for t in models]
    assert not any(t.interrupted for t in models), models
    # At least six handovers (an hour of 10-minute connections), all resumed, each with
    # a gap in the microphone audio of at most a second.
    assert len(handovers) >= 6
    assert all(h.resumed and h.reason == "goAway" for h in handovers)
    assert len(gaps) == len(handovers)
    assert max(gaps) <= 1000
    # All the audio went out (the relay holds what comes during a handover), none dropped.
    assert relay.counters.audio_bytes_sent == fed
    assert relay.counters.dropped_audio_bytes == 0
    # Memory stays flat: from the second exchange on (after warm-up), under 5 MB of growth.
    assert rss[-1] - rss[1] < 5, rss
