"""The main flow, the same in every notebook host: Share, a spoken question, the reply
played whole, the transcript read from Python, a hot swap of the system instruction from
Python while live, and Stop. Each host's test says where the widget is (a page or a frame)
and how Python runs there."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright

from screenshare_widget.emulator import LiveEmulator

from .chromium import launch_options, write_speech_wav

SEAM = "globalThis.__screenshareWidget.controllers[0]"
#: Silence after the fake microphone's question (s): longer than the emulator's spoken reply,
#: so a whole reply plays before the looping microphone asks again and barges in.
PAUSE_S = 14.0
#: The Python a host runs for the transcript (it prints JSON) and for the hot swap.
TRANSCRIPT = "import json\nprint(json.dumps([t.to_record() for t in assistant.transcript]))"
SWAP = "assistant.system_instruction = 'Start every answer with \"Switched\"'\nprint('swapped')"
MODEL_TURN = ".ssw-turn[data-role='model']"


def quiet_browser(playwright: Playwright, folder: Path) -> Browser:
    """A chromium whose fake microphone asks once, then is quiet for PAUSE_S."""
    wav = write_speech_wav(folder / "ask.wav", silence_s=PAUSE_S)
    return playwright.chromium.launch(**launch_options(wav))


def poll(view: Any, expression: str, predicate: Callable[[Any], bool], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = view.evaluate(expression)
        if predicate(value):
            return value
        view.wait_for_timeout(100)
    pytest.fail(f"timed out after {timeout_s} s: {expression} (last {value!r})")


@dataclass
class Host:
    """One notebook host, as the flow drives it."""

    #: where the widget is: a Playwright Page or Frame
    view: Any
    #: runs Python in the widget's kernel and returns what it printed
    python: Callable[[str], str]
    #: clicks the cell's Share (and, through a capture window, that window's)
    share: Callable[[], None]


def main_flow(host: Host, emulator: LiveEmulator) -> dict[str, Any]:
    """The flow; returns its figures (printed too)."""
    view, rec = host.view, emulator.traffic
    started = time.monotonic()
    host.share()
    view.wait_for_selector(".ssw-status[data-status='live']", timeout=30_000)
    live_s = time.monotonic() - started

    # The microphone reaches the model at 16 kHz in real time, the screen at most 1 fps.
    assert rec.wait_for(lambda r: r.audio_seconds() >= 4.0, 30), "no audio arrived"
    audio = [a for a in rec.audio if a.t >= rec.audio[0].t + 1.0]
    wall = audio[-1].t - audio[0].t
    seconds = sum(len(a.data) for a in audio[1:]) / 32_000
    assert wall > 2.0 and abs(seconds - wall) <= 0.15 * wall, (seconds, wall)
    assert rec.wait_for(lambda r: len(r.frames) >= 2, 15), "no frames arrived"
    frames = rec.frames
    assert all(f.data[:3] == b"\xff\xd8\xff" and max(f.width, f.height) <= 1024 for f in frames)
    assert len(frames) <= frames[-1].t - frames[0].t + 1.5, "more than a frame a second"

    # The reply to the spoken question, played whole.
    view.wait_for_selector(
        f"{MODEL_TURN}:not([data-interrupted]):not([data-partial]):has-text('pixels')",
        timeout=40_000,
    )
    reply_s = time.monotonic() - started
    stats = poll(view, f"{SEAM}.stats()", lambda s: s["played"] > 12_000 and s["queued"] == 0, 30)
    assert stats["underruns"] == 0, stats

    # The transcript, from Python, while live.
    turns = json.loads(host.python(TRANSCRIPT))
    answer = next(t for t in turns if t["role"] == "model")
    assert answer["text"].startswith("You spoke for") and "screen frame" in answer["text"]
    assert any(t["role"] == "user" for t in turns), turns

    # A hot swap from Python: the next spoken question is answered under the new rule.
    assert host.python(SWAP).strip().startswith("swapped")
    view.wait_for_selector(f"{MODEL_TURN}:has-text('Switched You spoke for')", timeout=45_000)

    view.click(".ssw-stop")
    poll(view, f"{SEAM}.tracks().map((t) => t.readyState)", lambda s: set(s) == {"ended"}, 10)
    view.wait_for_selector(".ssw-status[data-status='idle']", timeout=15_000)
    figures = {
        "live_s": round(live_s, 1),
        "reply_s": round(reply_s, 1),
        "uplink_s_per_s": round(seconds / wall, 3),
        "frames": len(frames),
        "played_s": round(stats["played"] / 24_000, 2),
        "underruns": stats["underruns"],
    }
    print(json.dumps(figures))
    return figures
