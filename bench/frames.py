"""Frames and bytes per minute for three scripted screens, three frame policies, side by side.

The screens are drawn on a canvas in chromium at simulated time (no waiting): a still
document with a blinking cursor, a document read and scrolled every few seconds, and a
video-like scene that changes everywhere all the time. Each is looked at every
``CHECK_MS``, as the page does, and fed to:

- **ours**: the widget's own ``FramePolicy`` (imported from ``static/widget.js``), with the
  user starting to speak every 30 s;
- **fixed 1 fps**: a frame every second, whatever the screen does;
- **tutorial**: the tutorial this project began from, which captured a frame every 3 s and
  attached the latest one to every audio message (40 ms messages here: 25 a second).

Every frame a policy sends is JPEG-encoded as the page would (1024x576, quality 0.7) to count
its bytes (a repeated frame is counted each time it is sent). Change-to-send latency: from
each scroll of the reading screen to the next frame our policy sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from .latency import percentile

STATIC = Path(__file__).resolve().parents[1] / "screenshare_widget" / "static"

#: The simulation, evaluated in the page: ``([widget_js_source, minutes]) => results``.
SIMULATE = (Path(__file__).with_name("simulate_frames.js")).read_text(encoding="utf-8")


def run(page: Page, minutes: float) -> dict[str, Any]:
    """Simulate ``minutes`` of each screen; per screen and policy: frames and KB a minute,
    and our change-to-send latency p50/p95 (ms)."""
    source = (STATIC / "widget.js").read_text(encoding="utf-8")
    raw = page.evaluate(SIMULATE, [source, minutes])
    results: dict[str, Any] = {}
    for screen, data in raw.items():
        row: dict[str, Any] = {}
        for policy in ("ours", "fixed", "tutorial"):
            row[policy] = {
                "frames_per_min": round(data[policy]["frames"] / minutes, 2),
                "kb_per_min": round(data[policy]["bytes"] / 1000 / minutes, 1),
            }
        row["ours"]["reasons"] = data["ours"]["reasons"]
        latencies = [float(x) for x in data["change_to_send_ms"]]
        row["change_to_send_ms"] = {
            "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95),
            "n": len(latencies),
        }
        row["fewer_than_fixed"] = round(
            row["fixed"]["frames_per_min"] / max(row["ours"]["frames_per_min"], 1e-9), 1
        )
        results[screen] = row
    return results
