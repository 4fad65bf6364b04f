"""A small run of the benchmarks keeps them working (their figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_benchmark_run_writes_its_json_table_and_plot(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--minutes", "0.25", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["frames"]) == {"static", "reading", "video"}
    for row in results["frames"].values():
        assert row["fixed"]["frames_per_min"] == pytest.approx(60, abs=4)
        assert row["tutorial"]["frames_per_min"] == pytest.approx(1500, rel=0.01)
        assert 0 < row["ours"]["frames_per_min"] <= row["fixed"]["frames_per_min"]
    table = (tmp_path / "results.md").read_text()
    assert table.startswith("Frames a minute per policy") and "| static |" in table
    assert (tmp_path / "frames.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
