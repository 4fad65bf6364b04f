"""The benchmarks' own logic, and a small run of them that keeps them working (their figures
are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.latency import pair, pcm_hash, percentile, summary
from bench.session import cpu_by_thread, thread_cpu, thread_group

ROOT = Path(__file__).resolve().parents[1]


def test_pcm_hash_follows_its_formula() -> None:
    rng = np.random.default_rng(7)
    pcm = rng.integers(0, 256, 3201, dtype=np.uint8).tobytes()  # odd: the last byte is ignored
    samples = np.frombuffer(pcm[:3200], dtype="<u2")
    expected = len(pcm)
    for i, sample in enumerate(samples.tolist()):
        expected += sample * (((i + 1) * 2654435761) % 2**32)
    assert pcm_hash(pcm) == expected % 2**32
    assert pcm_hash(b"") == 0
    assert pcm_hash(b"\0" * 10) != pcm_hash(b"\0" * 12)  # silence differs by length


def test_pairing_goes_in_order_skips_drops_and_repeats() -> None:
    # Chunks A B A C sent 40 ms apart; the second A was dropped on the way.
    sent = [(0.00, 1), (0.04, 2), (0.08, 1), (0.12, 3)]
    received = [(0.01, 1), (0.05, 2), (0.13, 3)]
    assert pair(sent, received) == [(0, 0), (1, 1), (3, 2)]
    # A repeat pairs with the next copy, never with one that arrived before it was sent.
    assert pair([(0.0, 5), (1.0, 5)], [(0.02, 5), (1.03, 5)]) == [(0, 0), (1, 1)]
    assert pair([(1.0, 5)], [(0.5, 5)]) == []
    # Nothing arrives later than the transit limit.
    assert pair([(0.0, 9)], [(6.0, 9)]) == []


def test_percentiles_and_summary() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)
    values = [float(x) for x in range(101)]
    assert summary(values) == {"n": 101, "p50": 50.0, "p95": 95.0, "max": 100.0}
    assert summary([]) == {"n": 0, "p50": None, "p95": None, "max": None}


def test_kernel_cpu_is_split_by_what_each_thread_does() -> None:
    names = {1: "MainThread", 2: "IOPub", 3: "screenshare-relay-7f", 4: "subshell-ab12"}
    before = {1: 1.0, 2: 2.0, 3: 0.5, 4: 1.0, 9: 0.2}
    # Thread 5 began after the first sample; thread 9 has no Python name (ZMQ's).
    after = {1: 1.0, 2: 2.5, 3: 2.5, 4: 2.0, 5: 0.25, 9: 0.3}
    assert cpu_by_thread(names, before, after, seconds=20.0) == {
        "relay (SDK, pumps, sends to the page)": 10.0,
        "ipykernel subshell (the page's messages)": 5.0,
        "ipykernel IOPub": 2.5,
        "ZMQ I/O and other native threads": 1.75,  # threads 5 and 9
    }
    assert thread_group("Shell channel") == "ipykernel shell channel"
    assert thread_group("Thread-7") == "other Python threads"


def test_thread_cpu_reads_every_thread_of_a_process() -> None:
    spun, stop = threading.Event(), threading.Event()

    def spin() -> None:
        deadline = time.thread_time() + 0.2
        while time.thread_time() < deadline:
            pass
        spun.set()
        stop.wait()

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        assert spun.wait(timeout=30), "the worker never spun its 0.2 s"
        cpu = thread_cpu(os.getpid())
    finally:
        stop.set()
        worker.join()
    assert os.getpid() in cpu  # the main thread's id is the process id
    assert worker.native_id is not None
    assert cpu[worker.native_id] >= 0.1  # it spun for 0.2 s of CPU


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_a_short_benchmark_run_writes_its_json_table_and_plots(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--minutes", "0.25", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=290,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["frames"]) == {"static", "reading", "video"}
    for row in results["frames"].values():
        assert row["fixed"]["frames_per_min"] == pytest.approx(60, abs=4)
        assert row["tutorial"]["frames_per_min"] == pytest.approx(1500, rel=0.01)
        assert 0 < row["ours"]["frames_per_min"] <= row["fixed"]["frames_per_min"]
    # The JupyterLab session measured both directions and sampled the kernel.
    session = results["session"]
    assert session["uplink_ms"]["n"] > 0 and session["uplink_ms"]["p50"] > 0
    assert session["uplink_paired"] >= 0.9 * session["uplink_sent"]
    assert session["downlink_first_ms"]["n"] > 0
    assert session["downlink_transit_ms"]["n"] > 0
    assert session["blocked_uplink_ms"]["n"] > 0
    assert len(session["kernel_series"]) >= 3
    assert session["kernel_cpu_pct"] > 0
    assert "relay (SDK, pumps, sends to the page)" in session["kernel_cpu_by_thread"]
    assert session["kernel_rss_mb"]["start"] > 20
    compared = results["session_compared"]
    assert (session["chunk_ms"], compared["chunk_ms"]) == (100, 40)
    assert compared["uplink_ms"]["n"] > 0 and compared["kernel_cpu_pct"] > 0
    table = (tmp_path / "results.md").read_text()
    assert table.startswith("Frames a minute per policy") and "| static |" in table
    assert "| uplink: worklet chunk to emulator | p50 " in table
    for plot in ("frames.png", "session.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
