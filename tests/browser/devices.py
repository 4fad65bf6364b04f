"""Chromium on real (PulseAudio) audio devices and a real captured tab: no fake devices.

The "screen" the user shares is another tab of the same browser, picked by its title
(``--auto-select-tab-capture-source-by-title``), so a test changes what is on screen by
drawing in that tab, and bringing it to the front puts the notebook's tab in the background,
as when a user shares a window and works in it. Chromium's fake-UI flag must not be passed:
with it, getDisplayMedia fails with "Could not start video source". The microphone
permission is granted by the browser context instead.
"""

from __future__ import annotations

import os
from typing import Any

from .chromium import chromium_executable
from .pulse import Pulse

#: The title of the tab that is shared as the screen.
SCREEN_TITLE = "SCREEN-TARGET"

#: Flags for real devices (compare chromium.BASE_ARGS, which fakes them).
REAL_DEVICE_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    f"--auto-select-tab-capture-source-by-title={SCREEN_TITLE}",
)

#: The shared tab: a full-window canvas a test redraws with ``show(n)``, which returns the
#: epoch time (ms) of the change; a different colour and number each time.
SCREEN_PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{SCREEN_TITLE}</title>
<style>html, body {{ margin: 0; height: 100%; overflow: hidden; }}
canvas {{ display: block; width: 100vw; height: 100vh; }}</style></head>
<body><canvas id="c" width="1280" height="720"></canvas>
<script>
const ctx = document.getElementById("c").getContext("2d");
window.show = (n) => {{
  ctx.fillStyle = `hsl(${{(n * 67) % 360}}, 70%, ${{n % 2 ? 12 : 88}}%)`;
  ctx.fillRect(0, 0, 1280, 720);
  ctx.fillStyle = n % 2 ? "#ffffff" : "#000000";
  ctx.font = "bold 200px sans-serif";
  ctx.fillText(String(n), 400, 460);
  return performance.timeOrigin + performance.now();
}};
window.show(0);
</script></body></html>
"""


def launch_real(playwright: Any, pulse: Pulse) -> Any:
    """Debian's chromium, headless, on ``pulse``'s devices (sync Playwright API)."""
    return playwright.chromium.launch(
        executable_path=chromium_executable(),
        headless=True,
        args=list(REAL_DEVICE_ARGS),
        ignore_default_args=["--mute-audio"],
        env={**os.environ, **pulse.env()},
    )


def new_context(browser: Any) -> Any:
    """A context with the microphone allowed (as a user's click on Allow would)."""
    return browser.new_context(viewport={"width": 1280, "height": 720}, permissions=["microphone"])
