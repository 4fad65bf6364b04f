"""The widget's page on real devices: a private PulseAudio (speaker, room, microphone) and a
real captured tab, in Debian's chromium with no fake device (see devices.py and pulse.py).

The page is the widget harness of test_widget_js (a fake anywidget model; no kernel): these
tests are about what the browser's devices do to the page.
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .cdp import Cdp, Chromium
from .devices import REAL_DEVICE_ARGS, SCREEN_PAGE, SCREEN_TITLE, launch_real, new_context
from .pulse import Pulse, require_pulse
from .test_widget_js import INIT_SCRIPT, _Handler

pytestmark = pytest.mark.browser

SEAM = "window.__screenshareWidget.controllers[0]"


class _DeviceHandler(_Handler):
    routes = {**_Handler.routes, "/screen": ("text/html", SCREEN_PAGE.encode)}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The harness and the screen tab, served from a thread on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DeviceHandler)
    thread = threading.Thread(target=server.serve_forever, name="devices-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _or_fail_pulse() -> None:
    try:
        require_pulse()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


class Tabs:
    """The notebook's tab (the harness) and the shared tab, in one context."""

    def __init__(self, browser: Any, site: str) -> None:
        self.context = new_context(browser)
        self.screen = self.context.new_page()
        self.screen.goto(f"{site}/screen")
        self.page = self.context.new_page()
        self.page.add_init_script(INIT_SCRIPT)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.goto(f"{site}/")
        self.page.wait_for_function("window.harnessReady === true", timeout=10_000)

    def share(self, **traits: Any) -> None:
        """Mount the widget (keeping a copy of every microphone chunk) and click Share."""
        self.page.evaluate(
            """(traits) => {
              mount(["light"], traits);
              window.__pcm = [];
              window.__frames = [];
              const send = model.send.bind(model);
              model.send = (content, callbacks, buffers = []) => {
                const copy = content.kind === "audio" ? buffers[0].slice(0) : null;
                if (copy) window.__pcm.push(new Int16Array(copy));
                if (content.kind === "frame") window.__frames.push({ t: content.t,
                  reason: content.reason, jpeg: buffers[0].slice(0) });
                send(content, callbacks, buffers);
              };
            }""",
            traits,
        )
        self.page.click(".ssw-share")
        self.page.wait_for_function(
            "model.sent.some((m) => m.content.kind === 'start')", timeout=15_000
        )

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"uncaught errors in the page: {self.errors}"


def _tone(rate_hz: int, seconds: float, parts: list[tuple[float, float]]) -> bytes:
    t = np.arange(round(rate_hz * seconds)) / rate_hz
    x = sum(amp * np.sin(2 * np.pi * hz * t) for hz, amp in parts)
    ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)  # no clicks at the ends
    return (np.asarray(x) * ramp * 32767).astype("<i2").tobytes()


def _amplitude(x: np.ndarray, hz: float, rate_hz: int) -> float:
    n = np.arange(len(x))
    return float(2 * abs(np.sum(x * np.exp(-2j * np.pi * hz * n / rate_hz))) / len(x))


def _peak_hz(x: np.ndarray, rate_hz: int) -> float:
    """The frequency of the spectrum's peak, refined by parabolic interpolation (Hz)."""
    window = np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x * window, n=8 * len(x)))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + offset) * rate_hz / (8 * len(x)))


@pytest.mark.parametrize("rate_hz", [44_100, 48_000])
def test_a_microphone_at_the_device_rate_is_resampled_to_16k(
    playwright: Any, site: str, tmp_path: Path, rate_hz: int
) -> None:
    """A 1 kHz tone and a 12 kHz one (which would alias to 4 kHz) played into the room at the
    device rate; the page's 16 kHz chunks have the 1 kHz tone within 1 % and nothing at 4 kHz.
    The browser's voice processing is turned off for this test (its noise suppression fades a
    steady tone): what is measured is the page's own resampler on a real device rate."""
    _or_fail_pulse()
    pulse = Pulse(tmp_path / "pulse", rate_hz=rate_hz).start()
    browser = launch_real(playwright, pulse)
    tabs = None
    try:
        tabs = Tabs(browser, site)
        tabs.page.evaluate(
            """() => {
              const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
              navigator.mediaDevices.getUserMedia = (c) => gum({ audio: { ...c.audio,
                echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
            }"""
        )
        pulse.set_echo_gain(0)  # nothing from the speaker: only the tone is in the room
        tabs.share()
        context_rate = tabs.page.evaluate(f"{SEAM}.captureContext.sampleRate")
        assert context_rate == rate_hz, "the capture context does not run at the device rate"
        recorder = pulse.record()
        player = pulse.play(_tone(rate_hz, 2.0, [(1000, 0.3), (12000, 0.3)]), rate_hz)
        player.wait(10)
        tabs.page.wait_for_timeout(500)
        recorder.terminate()
        heard, _ = recorder.communicate(timeout=5)
        chunks = tabs.page.evaluate("window.__pcm.map((c) => Array.from(c))")
    finally:
        if tabs is not None:
            tabs.close()
        browser.close()
        pulse.stop()
    # The room (what the microphone hears at the device rate) has both tones.
    raw = np.frombuffer(heard, dtype="<i2").astype(np.float64) / 32768
    middle = raw[np.flatnonzero(np.abs(raw) > 0.1)[0] + rate_hz // 2 :][:rate_hz]
    assert _amplitude(middle, 12000, rate_hz) > 0.2, "the 12 kHz tone is not in the room"
    x = np.concatenate([np.asarray(c, dtype=np.float64) for c in chunks]) / 32768
    level = np.array(
        [np.sqrt(np.mean(x[i : i + 1600] ** 2)) for i in range(0, len(x) - 1600, 1600)]
    )
    loud = np.flatnonzero(level > 0.05)
    assert len(loud) >= 10, f"the tone did not come through (levels {np.round(level, 3)})"
    tone = x[(loud[0] + 2) * 1600 : (loud[-1] - 1) * 1600]  # the steady middle
    peak = _peak_hz(tone, 16_000)
    a1k, a4k = _amplitude(tone, 1000, 16_000), _amplitude(tone, 4000, 16_000)
    print(
        f"{rate_hz} Hz device: peak {peak:.1f} Hz, 1 kHz at {20 * np.log10(a1k):.1f} dBFS, "
        f"4 kHz (alias of 12 kHz) at {20 * np.log10(a4k + 1e-9):.1f} dBFS"
    )
    assert peak == pytest.approx(1000, rel=0.01)
    assert a4k < a1k * 10 ** (-40 / 20), "the 12 kHz tone aliased into the 16 kHz stream"


KEEP_FRAMES = """() => {
  window.__frames = [];
  const send = model.send.bind(model);
  model.send = (content, callbacks, buffers = []) => {
    if (content.kind === "frame") window.__frames.push({ t: content.t, reason: content.reason,
      jpeg: buffers[0].slice(0) });
    send(content, callbacks, buffers);
  };
}"""

#: Each frame's mean luma (0-255), decoded in the page.
FRAME_LUMA = """async () => {
  const canvas = new OffscreenCanvas(32, 18), ctx = canvas.getContext("2d");
  const out = [];
  for (const f of window.__frames) {
    const bitmap = await createImageBitmap(new Blob([f.jpeg], { type: "image/jpeg" }));
    ctx.drawImage(bitmap, 0, 0, 32, 18);
    const d = ctx.getImageData(0, 0, 32, 18).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    out.push({ t: f.t, reason: f.reason, luma: sum / (d.length / 4) });
  }
  return out;
}"""


def change_to_send(changes: list[tuple[int, float]], frames: list[dict[str, Any]]) -> list[float]:
    """For each screen change (n, epoch ms), the delay until the first frame sent after it
    that shows it (odd n are dark screens, even n light ones), in ms; inf if none."""
    delays = []
    for n, at in changes:
        shown = [f["t"] - at for f in frames if f["t"] >= at and (f["luma"] < 128) == (n % 2 == 1)]
        delays.append(min(shown) if shown else float("inf"))
    return delays


#: How long the notebook's tab stays in the background (s). The suite's long hidden run is
#: test_speakers.py's (about seven minutes, past the five after which Chrome wakes a page's
#: own timers only once a minute); SSW_BACKGROUND_S=600 runs this one for ten minutes.
BACKGROUND_S = float(os.environ.get("SSW_BACKGROUND_S", "60"))
#: The screen changes this often while the notebook is in the background (s); more than the
#: frame interval (1 s at max_fps 1), so each change can go out on its own.
CHANGE_EVERY_S = 3.0
#: Model audio the test plays as the kernel would, this often (s), each this long (s).
VOICE_EVERY_S = 30.0
VOICE_S = 1.0
#: The harness's audio message of VOICE_S of 24 kHz sine.
SEND_VOICE = f"""(() => {{
  const pcm = sinePcm({round(24_000 * VOICE_S)}, 0, 440, 0.3);
  model.kernel({{ kind: "audio", gen: 0 }}, [pcm]);
  model.kernel({{ kind: "turn_complete", gen: 0 }});
  return true;
}})()"""
#: How many microphone chunks the page sent in the last second.
MIC_NOW = """(() => {
  const since = performance.now() - 1000;
  const recent = model.sent.filter((m) => m.content.kind === "audio" && m.at >= since);
  return recent.length;
})()"""


@pytest.mark.timeout(BACKGROUND_S + 120)
def test_a_notebook_tab_in_the_background_keeps_frames_and_audio_flowing(
    playwright: Any, site: str, tmp_path: Path
) -> None:
    """The user shares a tab and works in it: the notebook's tab is hidden for BACKGROUND_S.
    The screen changes every CHANGE_EVERY_S; each change reaches the kernel as a frame that
    shows it (change to send p95 at most 1 s), the microphone keeps sending 100 ms chunks,
    and the model's voice keeps playing. Playwright is detached meanwhile (see cdp.py), so the
    tab is truly in the background, with Chrome's throttling of hidden tabs."""
    _or_fail_pulse()
    pulse = Pulse(tmp_path / "pulse").start()
    chromium = Chromium(list(REAL_DEVICE_ARGS), pulse.env(), tmp_path / "chromium")
    cdp = None
    try:
        cdp = Cdp(chromium.ws_url)
        cdp.grant_microphone(site)  # for the whole test (Playwright's ends when it leaves)
        driver = playwright.chromium.connect_over_cdp(chromium.url)
        context = driver.contexts[0]
        page = context.pages[0]
        page.add_init_script(INIT_SCRIPT)
        page.goto(f"{site}/")
        page.wait_for_function("window.harnessReady === true", timeout=10_000)
        context.new_page().goto(f"{site}/screen")
        page.bring_to_front()
        page.evaluate("() => mount(['light'], {})")
        page.evaluate(KEEP_FRAMES)
        page.click(".ssw-share")
        page.wait_for_function("model.sent.some((m) => m.content.kind === 'start')", timeout=15_000)
        # Playwright holds each new worker until it lets it run: it must not leave while the
        # page's timer and encoder workers start, or they stay paused (a test artefact). The
        # frame stats of 4+ checks and a frame sent say both run.
        page.wait_for_function(
            "model.sent.some((m) => m.content.kind === 'frame_stats' && m.content.checked >= 4)"
            " && model.sent.some((m) => m.content.kind === 'frame')",
            timeout=15_000,
        )
        driver.close()  # detaches Playwright; the browser and its pages stay

        notebook, screen = (
            chromium.target("screenshare widget harness"),
            chromium.target(SCREEN_TITLE),
        )
        cdp.activate(screen)
        deadline = time.monotonic() + 5
        while cdp.evaluate(notebook, "document.visibilityState") != "hidden":
            assert time.monotonic() < deadline, "the notebook's tab did not go to the back"
            time.sleep(0.05)
        assert cdp.evaluate(screen, "document.visibilityState") == "visible"
        played0 = cdp.evaluate(notebook, f"{SEAM}.stats().then((s) => s.played)")
        changes: list[tuple[int, float]] = []
        mic_per_s: list[int] = []
        voices = 0
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < BACKGROUND_S:
            n += 1
            changes.append((n, cdp.evaluate(screen, f"show({n})")))
            mic_per_s.append(cdp.evaluate(notebook, MIC_NOW))
            if time.monotonic() - start >= voices * VOICE_EVERY_S:
                cdp.evaluate(notebook, SEND_VOICE)
                voices += 1
            time.sleep(CHANGE_EVERY_S)
        hidden = cdp.evaluate(notebook, "document.visibilityState")
        stats = cdp.evaluate(notebook, f"{SEAM}.stats()")
        frames = cdp.evaluate(notebook, f"({FRAME_LUMA})()")
        errors = cdp.evaluate(notebook, "window.__errors ?? []")
    finally:
        if cdp is not None:
            cdp.close()
        chromium.close()
        pulse.stop()
    assert hidden == "hidden", "the notebook's tab came to the front during the test"
    assert not errors, errors
    delays = np.array(change_to_send(changes, frames))
    p50, p95 = np.percentile(delays, [50, 95])
    print(
        f"background {BACKGROUND_S:.0f} s: {len(changes)} screen changes, change to send "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {delays.max():.0f} ms; mic chunks per s "
        f"min {min(mic_per_s)} median {np.median(mic_per_s):.0f}; voice played "
        f"{(stats['played'] - played0) / 24_000:.1f} s of {voices * VOICE_S:.1f} s, "
        f"underruns {stats['underruns']}"
    )
    assert p95 <= 1000, f"change to send p95 {p95:.0f} ms in a background tab"
    assert min(mic_per_s[1:]) >= 8, f"the microphone stalled: {mic_per_s}"
    played_s = (stats["played"] - played0) / 24_000
    assert played_s >= (voices - 1) * VOICE_S, "the model's voice stopped playing"


#: The page's voice processing off (its noise suppression fades a steady tone): what is
#: measured is which device the page hears.
RAW_MIC = """() => {
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => gum({ audio: { ...c.audio,
    echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
}"""
#: The loudest RMS (of full scale) of the microphone chunks sent after chunk ``n``.
LOUDEST_SINCE = """(n) => Math.max(0, ...window.__pcm.slice(n).map((c) => {
  let sum = 0;
  for (const x of c) sum += (x / 32768) ** 2;
  return Math.sqrt(sum / c.length);
}))"""
HEADSET = ("master=room.monitor", "source_name=headset",
           "source_properties=device.description=Headset")  # fmt: skip


def _options(page: Any) -> list[list[str]]:
    return list(
        page.evaluate(
            "[...document.querySelector('.ssw-mic').options].map((o) => [o.value, o.text])"
        )
    )


def _notice(page: Any) -> str:
    return str(page.evaluate("document.querySelector('.ssw-notice').textContent"))


def test_a_microphone_unplugged_mid_session_is_picked_again(
    playwright: Any, site: str, tmp_path: Path
) -> None:
    """The user talks through a USB microphone (picked in the cell's menu), unplugs it and
    plugs in a headset: the cell says the microphone stopped and that a headset came, the
    screen and typing go on meanwhile, and picking the headset brings the voice back in the
    same capture (a tone played into the room reaches the kernel)."""
    _or_fail_pulse()
    pulse = Pulse(tmp_path / "pulse").start()
    pulse.set_echo_gain(0)
    browser = launch_real(playwright, pulse)
    tabs = None
    try:
        tabs = Tabs(browser, site)
        page = tabs.page
        page.evaluate(RAW_MIC)
        tabs.share(heartbeat_s=1.0)
        page.wait_for_function("document.querySelector('.ssw-mic').options.length >= 2")
        usb = next(value for value, text in _options(page) if text == "mic")
        page.select_option(".ssw-mic", usb)
        page.wait_for_function("document.querySelector('.ssw-notice').textContent.includes('mic')")
        assert _notice(page) == "Listening through “mic”."

        pulse.unload_module("module-remap-source")  # the USB microphone is unplugged
        pulse.load("headset", "module-remap-source", *HEADSET)  # and a headset plugged in
        page.wait_for_function(
            "model.sent.some((m) => m.content.kind === 'device' && m.content.what === 'mic_ended')",
            timeout=15_000,
        )
        page.wait_for_function(
            "document.querySelector('.ssw-notice').textContent.includes('Headset')", timeout=10_000
        )
        assert _notice(page).startswith(
            "The microphone stopped (unplugged?); a new microphone connected: “Headset”. Pick it"
        ), _notice(page)
        assert page.input_value(".ssw-mic") == ""  # the menu asks for one
        assert [text for _, text in _options(page)] == ["Pick a microphone…", "Default", "Headset"]
        # Meanwhile the screen and typing go on, and no audio is sent.
        frames, chunks = page.evaluate(f"[{SEAM}.sent.frames, window.__pcm.length]")
        page.fill(".ssw-text-input", "can you still see my screen?")
        page.press(".ssw-text-input", "Enter")
        page.wait_for_function(f"{SEAM}.sent.frames >= {frames + 2}", timeout=5_000)
        assert page.evaluate("model.sent.filter((m) => m.content.kind === 'text').length") == 1
        assert page.evaluate("window.__pcm.length") <= chunks + 1

        headset = next(value for value, text in _options(page) if text == "Headset")
        page.select_option(".ssw-mic", headset)
        page.wait_for_function(f"window.__pcm.length >= {chunks + 5}", timeout=5_000)
        after = page.evaluate("window.__pcm.length")
        pulse.play(_tone(48_000, 1.0, [(440, 0.3)]), 48_000).wait(10)
        page.wait_for_timeout(300)
        loudest = page.evaluate(LOUDEST_SINCE, after)
        told = page.evaluate(
            "model.sent.filter((m) => m.content.kind === 'device').map((m) => m.content)"
        )
        starts = page.evaluate("model.sent.filter((m) => m.content.kind === 'start').length")
        stops = page.evaluate("model.sent.filter((m) => m.content.kind === 'stop').length")
        seqs = page.evaluate(
            "model.sent.filter((m) => m.content.kind === 'audio').map((m) => m.content.seq)"
        )
    finally:
        if tabs is not None:
            tabs.close()
        browser.close()
        pulse.stop()
    assert loudest > 0.1, f"the headset's tone did not reach the kernel (RMS {loudest:.3f})"
    assert [(t["what"], t["label"]) for t in told] == [
        ("mic_changed", "mic"), ("mic_ended", "mic"), ("mic_changed", "Headset"),
    ]  # fmt: skip
    assert (starts, stops) == (1, 0), "the capture restarted"
    assert seqs == list(range(len(seqs))), "the microphone's chunk numbers did not go on"


def test_the_shared_tab_closed_keeps_the_voice_and_a_new_screen_is_shared(
    playwright: Any, site: str, tmp_path: Path
) -> None:
    """The shared tab is closed (the capture ends as with the browser's own Stop sharing):
    the cell says so and offers to share again, the microphone keeps sending, and "Share a
    screen" picks a new tab in the same capture, whose picture then reaches the kernel."""
    _or_fail_pulse()
    pulse = Pulse(tmp_path / "pulse").start()
    browser = launch_real(playwright, pulse)
    tabs = None
    try:
        tabs = Tabs(browser, site)
        page = tabs.page
        tabs.share(heartbeat_s=1.0)
        page.wait_for_function(f"{SEAM}.sent.frames >= 1", timeout=10_000)
        tabs.screen.close()
        page.wait_for_selector(".ssw-reshare", state="visible", timeout=5_000)
        assert _notice(page).startswith("Screen sharing ended; the voice conversation continues")
        chunks = page.evaluate("window.__pcm.length")
        frames = page.evaluate(f"{SEAM}.sent.frames")
        page.wait_for_function(f"window.__pcm.length >= {chunks + 10}", timeout=3_000)
        assert page.evaluate(f"{SEAM}.sent.frames") == frames  # nothing shared, nothing sent
        again = tabs.context.new_page()
        again.goto(f"{site}/screen")
        again.evaluate("show(1)")  # a dark screen: the first tab was light
        page.bring_to_front()
        page.click(".ssw-reshare")
        page.wait_for_selector(".ssw-reshare", state="hidden", timeout=10_000)
        page.wait_for_function(f"{SEAM}.sent.frames >= {frames + 2}", timeout=10_000)
        lumas = [f["luma"] for f in page.evaluate(f"({FRAME_LUMA})()")]
        told = page.evaluate(
            "model.sent.filter((m) => m.content.kind === 'device').map((m) => m.content.what)"
        )
        stops = page.evaluate("model.sent.filter((m) => m.content.kind === 'stop').length")
    finally:
        if tabs is not None:
            tabs.close()
        browser.close()
        pulse.stop()
    assert told == ["screen_ended", "screen_shared"]
    assert stops == 0
    assert lumas[0] > 128 and lumas[-1] < 128, f"the new tab's picture did not arrive: {lumas}"
