"""Tier 1: ``static/widget.js`` in chromium on a static page, with a fake anywidget model.

No Jupyter: a thread serves the module and a harness page on 127.0.0.1 (a secure origin); the
page mounts the widget on a ~20-line fake model that records ``model.send`` and plays the
kernel through ``model.kernel(content, buffers)``. Chromium's fake devices stand in for the
screen (a 1280x720 test pattern) and the microphone (espeak-ng speech).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Page

from bench.latency import pcm_hash

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "screenshare_widget" / "static"
ARTIFACTS = ROOT / "test-artifacts"

BUSY_NOTICE = (
    "Paused: the kernel is busy running a cell; the conversation resumes when it finishes."
)
OUTPUT_RATE_HZ = 24_000
RENDER_QUANTUM = 128  # frames
#: Paced model audio: sent this far ahead at first (ms), then this much faster than real time.
PACE_LEAD_MS = 200
PACE_SPEEDUP = 1.25

HARNESS = """<!doctype html>
<html><head><meta charset="utf-8"><title>screenshare widget harness</title>
<link rel="stylesheet" href="/widget.css">
<style>
  body { margin: 16px; background: #f5f5f5; }
  .view { margin-bottom: 14px; }
  /* A few JupyterLab dark-theme variables, to look at the widget on a dark notebook. */
  .theme-dark { padding: 12px; background: #111111;
    --jp-layout-color1: #212121; --jp-layout-color2: #424242; --jp-border-color2: #424242;
    --jp-ui-font-color1: rgba(255,255,255,0.87); --jp-ui-font-color2: rgba(255,255,255,0.54);
    --jp-brand-color1: #42a5f5; --jp-success-color1: #66bb6a; --jp-warn-color1: #ffa726;
    --jp-warn-color3: #5d4037; --jp-error-color1: #ef5350; --jp-error-color3: #5c2a2a; }
</style></head>
<body><div id="views"></div>
<script type="module">
import widget, * as helpers from "/widget.js";

const describe = (b) => ({ exact: b instanceof ArrayBuffer, bytes: b.byteLength,
  head: Array.from(new Uint8Array(b instanceof ArrayBuffer ? b : b.buffer, 0, 3)) });

class FakeModel {
  constructor(traits) {
    this.traits = { ...traits }; this.listeners = []; this.sent = []; this.saves = 0;
  }
  get(key) { return this.traits[key]; }
  set(key, value) { this.traits[key] = value; this.emit(`change:${key}`); }
  save_changes() { this.saves += 1; }
  on(name, fn) { this.listeners.push([name, fn]); }
  off(name, fn) {
    this.listeners = this.listeners.filter(([n, f]) => (name && n !== name) || (fn && f !== fn));
  }
  send(content, _callbacks, buffers = []) {
    this.sent.push({ content, at: performance.now(), buffers: buffers.map(describe) });
  }
  emit(name, ...args) { for (const [n, fn] of [...this.listeners]) if (n === name) fn(...args); }
  /** Play the kernel: a custom message whose buffers arrive as DataViews (offset 1 if asked). */
  kernel(content, buffers = [], { oddOffset = false } = {}) {
    const views = buffers.map((b) => {
      if (!oddOffset) return new DataView(b);
      const shifted = new Uint8Array(b.byteLength + 1);
      shifted.set(new Uint8Array(b), 1);
      return new DataView(shifted.buffer, 1, b.byteLength);
    });
    this.emit("msg:custom", content, views);
  }
}

const TRAITS = { status: "idle", error: "", backend: "Gemini API", emulated: false,
  model: "gemini-live-test", voice: "Puck", max_fps: 1, max_size: 1024, jpeg_quality: 0.7,
  live_since: 0, volume: 1, muted: false };

/** Mount one model with a view per theme name ("light" or "dark"). */
window.mount = (themes = ["light"], traits = {}) => {
  const model = new FakeModel({ ...TRAITS, ...traits });
  const def = widget();
  def.initialize({ model });
  for (const theme of themes) {
    const el = document.createElement("div");
    el.className = `view theme-${theme}`;
    document.getElementById("views").append(el);
    def.render({ model, el });
  }
  window.model = model;
  return model.sent.length;
};

/** Like mount, but each view can go and come back: `addView()` renders one more and
 * returns its index; `views[i]()` removes view i (anywidget's render cleanup). */
window.mountViews = (count = 1, traits = {}) => {
  window.model = new FakeModel({ ...TRAITS, ...traits });
  window.def = widget();
  window.disposeModel = window.def.initialize({ model: window.model });
  window.views = [];
  for (let i = 0; i < count; i++) window.addView();
};
window.addView = (attach = true) => {
  const el = document.createElement("div");
  el.className = "view theme-light";
  if (attach) document.getElementById("views").append(el);
  window.views.push(window.def.render({ model: window.model, el }));
  window.lastViewEl = el;
  return window.views.length - 1;
};

/** `samples` of a sine at 24 kHz as PCM16, starting at sample `start` (phase-continuous). */
window.sinePcm = (samples, start = 0, hz = 440, amplitude = 0.5) => {
  const pcm = new Int16Array(samples);
  for (let i = 0; i < samples; i++) {
    pcm[i] = Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * hz * (start + i)) / 24000));
  }
  return pcm.buffer;
};

/** Record what the player outputs: a worklet after it in the same 24 kHz context; after
 * the player worklet itself, or (from = "gainNode") after the volume, what is heard. */
window.installTap = async (from = "playerNode") => {
  const c = window.__screenshareWidget.controllers[0];
  const src = `class Tap extends AudioWorkletProcessor {
    constructor() { super(); this.frames = []; this.samples = [];
      this.port.onmessage = () =>
        this.port.postMessage({ frames: this.frames, samples: this.samples }); }
    process(inputs) { const x = inputs[0][0];
      if (x) { this.frames.push(currentFrame); this.samples.push(Float32Array.from(x)); }
      return true; } }
    registerProcessor("tap", Tap);`;
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  await c.playbackContext.audioWorklet.addModule(url);
  const tap = new AudioWorkletNode(c.playbackContext, "tap",
    { numberOfInputs: 1, numberOfOutputs: 0 });
  c[from].connect(tap);
  window.tap = tap;
};

/** The tap's record over audio frames [from, to): the RMS, the largest step between two
 * samples, and the peak of each render quantum (the envelope). */
window.tapWindow = (from, to) => new Promise((resolve) => {
  window.tap.port.onmessage = ({ data }) => {
    let sum = 0, n = 0, maxStep = 0, prev = null;
    const peaks = [];
    data.frames.forEach((frame, b) => {
      if (frame + 128 <= from || frame >= to) return;
      const x = data.samples[b];
      let peak = 0;
      for (let i = 0; i < x.length; i++) {
        if (frame + i < from || frame + i >= to) continue;
        sum += x[i] * x[i]; n++;
        if (prev !== null) maxStep = Math.max(maxStep, Math.abs(x[i] - prev));
        prev = x[i];
        peak = Math.max(peak, Math.abs(x[i]));
      }
      peaks.push(peak);
    });
    resolve({ rms: n ? Math.sqrt(sum / n) : -1, n, maxStep, peaks });
  };
  window.tap.port.postMessage("dump");
});

/** The tap's record: first/last non-zero frame and the largest step between samples. */
window.readTap = () => new Promise((resolve) => {
  window.tap.port.onmessage = ({ data }) => {
    let first = -1, last = -1, maxStep = 0, prev = null, end = 0;
    data.frames.forEach((frame, b) => {
      const x = data.samples[b];
      for (let i = 0; i < x.length; i++) {
        if (x[i] !== 0) { if (first < 0) first = frame + i; last = frame + i; }
        if (prev !== null && first >= 0) maxStep = Math.max(maxStep, Math.abs(x[i] - prev));
        prev = x[i];
      }
      end = frame + x.length;
    });
    resolve({ first, last, maxStep, end });
  };
  window.tap.port.postMessage("dump");
});

window.helpers = helpers;
window.harnessReady = true;
</script></body></html>
"""

# Keeps every display stream and microphone track the page opened, even after a failed start.
INIT_SCRIPT = """
window.__displayStreams = [];
window.__micTracks = [];
const originalUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (...args) => {
  const stream = await originalUserMedia(...args);
  window.__micTracks.push(...stream.getTracks());
  return stream;
};
const original = navigator.mediaDevices.getDisplayMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getDisplayMedia = async (...args) => {
  // A test may share a canvas of its own instead of chromium's (ever-moving) test pattern.
  const stream = window.__stillScreen
    ? window.__stillScreen.captureStream(10)
    : await original(...args);
  window.__displayStreams.push(stream);
  return stream;
};
/** Share a still 1280x720 "document" (redrawn the same, 10 times a second) from now on. */
window.useStillScreen = () => {
  const canvas = document.createElement("canvas");
  canvas.width = 1280;
  canvas.height = 720;
  const ctx = canvas.getContext("2d");
  window.__screenContent = "still";
  const draw = () => {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, 1280, 720);
    ctx.fillStyle = "#202020";
    ctx.font = "36px sans-serif";
    for (let y = 80; y < 700; y += 60) ctx.fillText("A line of a still document", 60, y);
    if (window.__screenContent === "changed") {
      ctx.fillStyle = "#1565c0";
      ctx.fillRect(640, 0, 640, 720);
    }
  };
  draw();
  setInterval(draw, 100);
  window.__stillScreen = canvas;
};
/** Change half of the still screen; returns when (epoch ms). */
window.changeScreen = () => {
  window.__screenContent = "changed";
  return performance.timeOrigin + performance.now();
};
"""


#: A host page that frames the harness and denies the frame both capture features, as VS
#: Code's and Colab's output frames do.
DENYING_HOST = """<!doctype html><html><head><title>host</title></head><body>
<iframe id="notebook" src="/?framed" width="1200" height="700"
  allow="microphone 'none'; display-capture 'none'"></iframe></body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, Callable[[], bytes]]] = {
        "/": ("text/html", HARNESS.encode),
        "/denying-host.html": ("text/html", DENYING_HOST.encode),
        "/widget.js": ("text/javascript", (STATIC / "widget.js").read_bytes),
        "/widget.css": ("text/css", (STATIC / "widget.css").read_bytes),
    }

    def do_GET(self) -> None:
        route = self.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_error(404)
            return
        content_type, body = route[0], route[1]()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


@pytest.fixture(scope="module")
def harness_url() -> Iterator[str]:
    """The harness page, served from a thread on 127.0.0.1 (a secure context)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="widget-js-harness", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def page(page: Page, harness_url: str) -> Iterator[Page]:
    """The conftest's fresh 1280x720 page with the harness loaded; fails on uncaught errors."""
    page.context.add_init_script(INIT_SCRIPT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(harness_url)
    page.wait_for_function("window.harnessReady === true", timeout=10_000)
    yield page
    assert not errors, f"uncaught errors in the page: {errors}"


# ---- helpers ---------------------------------------------------------------------------------


def poll(page: Page, expression: str, timeout_s: float = 5.0, what: str = "") -> Any:
    """Evaluate ``expression`` until it is truthy; return it. Fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        page.wait_for_timeout(25)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what or expression} (last: {value})")


def sent(page: Page, kind: str) -> list[dict[str, Any]]:
    """What the page sent to the kernel with this ``kind``."""
    return list(page.evaluate("(kind) => model.sent.filter((m) => m.content.kind === kind)", kind))


def share(page: Page, themes: tuple[str, ...] = ("light",), **traits: Any) -> None:
    """Mount the widget, click Share in the first view and wait for ``start``."""
    page.evaluate("([themes, traits]) => mount(themes, traits)", [list(themes), traits])
    page.locator(".ssw-share").first.click()
    poll(page, "model.sent.some((m) => m.content.kind === 'start')", 10, "the start message")


def kernel(page: Page, content: dict[str, Any]) -> None:
    """Send a message from the (fake) kernel to the page."""
    page.evaluate("(content) => model.kernel(content)", content)


def stats(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("window.__screenshareWidget.controllers[0].stats()"))


def inject_sine(
    page: Page,
    seconds: float,
    chunk_ms: int,
    gen: int,
    *,
    paced: bool = False,
    complete: bool = False,
) -> int:
    """Send ``seconds`` of 24 kHz sine as ``audio`` chunks, every other one at an odd byte
    offset; returns the number of samples sent.

    Unpaced, everything is sent at once. Paced, it behaves like a live relay: a PACE_LEAD_MS
    burst, then chunks on a fixed schedule at PACE_SPEEDUP times real time (an absolute
    schedule, so timer delays never accumulate). With ``complete``, ``turn_complete`` follows
    the last chunk at once, as the kernel sends it.
    """
    total = round(seconds * OUTPUT_RATE_HZ)
    page.evaluate(
        """async ([total, chunkMs, gen, paced, complete, leadMs, speedup]) => {
          const chunk = 24 * chunkMs, t0 = performance.now();
          for (let start = 0, i = 0; start < total; start += chunk, i++) {
            const due = t0 + (start / 24 - leadMs) / speedup;
            if (paced && due > performance.now()) {
              await new Promise((r) => setTimeout(r, due - performance.now()));
            }
            const pcm = sinePcm(Math.min(chunk, total - start), start);
            model.kernel({ kind: "audio", gen }, [pcm], { oddOffset: i % 2 === 1 });
          }
          if (complete) model.kernel({ kind: "turn_complete", gen });
        }""",
        [total, chunk_ms, gen, paced, complete, PACE_LEAD_MS, PACE_SPEEDUP],
    )
    return total


def wait_all_ended(page: Page) -> None:
    """Wait until every track the page opened (screen and microphone) has ended."""
    poll(
        page,
        """window.__displayStreams.length > 0 && [
             ...window.__displayStreams.flatMap((s) => s.getTracks()),
             ...window.__micTracks,
           ].every((t) => t.readyState === "ended")""",
        3,
        "every track to end",
    )


# ---- tests -----------------------------------------------------------------------------------


def test_helpers(page: Page) -> None:
    result = page.evaluate(
        """() => {
          const h = helpers;
          const odd = new Uint8Array([9, 0x00, 0x40, 0x00, 0xc0, 0xff, 0x7f]);  // 0.5, -0.5, ~1
          const lp = h.designLowpass(7000, 48000, 133);
          const gain = (hz) => { let re = 0, im = 0;
            lp.forEach((c, n) => { re += c * Math.cos(2 * Math.PI * hz * n / 48000);
                                   im -= c * Math.sin(2 * Math.PI * hz * n / 48000); });
            return Math.hypot(re, im); };
          const view = new Uint8Array(new ArrayBuffer(8), 2, 4);
          return {
            fit: [h.fitSize(1280, 720, 1024), h.fitSize(720, 1280, 1024), h.fitSize(800, 600, 1024),
                  h.fitSize(0, 0, 1024)],
            pcm: Array.from(h.floatToPcm16(new Float32Array([0, 1, -1, 2, -2, 0.5, NaN]))),
            floats: Array.from(h.pcm16ToFloat(new DataView(odd.buffer, 1, 6))),
            exact: [h.exactBuffer(view).byteLength, h.exactBuffer(view) instanceof ArrayBuffer,
                    h.exactBuffer(view.buffer) === view.buffer],
            gains: [gain(0), gain(1000), gain(4000), gain(9000), gain(12000), gain(20000)],
            taps48k: h.resamplerTaps(48000).length, taps16k: h.resamplerTaps(16000),
            elapsed: [h.formatElapsed(65), h.formatElapsed(3725)],
            kinds: [h.BROWSER_KINDS, h.KERNEL_KINDS],
          };
        }"""
    )
    assert result["fit"] == [
        {"width": 1024, "height": 576},
        {"width": 576, "height": 1024},
        {"width": 800, "height": 600},  # never upscaled
        {"width": 0, "height": 0},
    ]
    assert result["pcm"] == [0, 32767, -32768, 32767, -32768, 16384, 0]
    assert result["floats"] == [0.5, -0.5, 32767 / 32768]
    assert result["exact"] == [4, True, True]
    dc, g1k, g4k, g9k, g12k, g20k = result["gains"]
    assert dc == pytest.approx(1, abs=1e-6)
    assert g1k == pytest.approx(1, abs=0.01)
    assert g4k == pytest.approx(1, abs=0.01)
    assert max(g9k, g12k, g20k) < 0.01  # at least 40 dB down above 9 kHz: no aliasing
    assert result["taps48k"] % 2 == 1
    assert result["taps16k"] is None
    assert result["elapsed"] == ["01:05", "1:02:05"]


def test_capture_worklet_resamples_to_16k_without_aliasing(page: Page) -> None:
    """1 s of a 1 kHz tone plus a 12 kHz tone (which would alias to 4 kHz) through the real
    capture worklet, rendered offline at 48, 44.1 and 16 kHz."""
    result = page.evaluate(
        """async () => {
          const h = helpers, out = {};
          for (const rate of [48000, 44100, 16000]) {
            const ctx = new OfflineAudioContext(1, rate, rate);
            const url = URL.createObjectURL(
              new Blob([h.CAPTURE_WORKLET_SOURCE], { type: "text/javascript" }));
            await ctx.audioWorklet.addModule(url);
            const node = new AudioWorkletNode(ctx, h.CAPTURE_PROCESSOR, {
              numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1,
              channelCountMode: "explicit",
              processorOptions: { taps: h.resamplerTaps(rate), outRate: 16000, chunkSamples: 640 },
            });
            const chunks = [];
            node.port.onmessage = ({ data }) => chunks.push(data);
            for (const [hz, gain] of [[1000, 0.4], [12000, 0.4]]) {
              if (hz >= rate / 2) continue;
              const osc = new OscillatorNode(ctx, { frequency: hz });
              osc.connect(new GainNode(ctx, { gain })).connect(node);
              osc.start();
            }
            await ctx.startRendering();
            const deadline = performance.now() + 2000;  // port messages trail the rendering
            while (chunks.length < 25 && performance.now() < deadline) {
              await new Promise((r) => setTimeout(r, 10));
            }
            const pcm = chunks.flatMap((c) => Array.from(new Int16Array(c.pcm)));
            const x = pcm.slice(4000, 12000).map((v) => v / 32768);  // skip the filter warm-up
            const amp = (hz) => { let re = 0, im = 0;
              x.forEach((v, n) => { re += v * Math.cos(2 * Math.PI * hz * n / 16000);
                                    im += v * Math.sin(2 * Math.PI * hz * n / 16000); });
              return 2 * Math.hypot(re, im) / x.length; };
            out[rate] = { chunks: chunks.length, bytes: chunks.map((c) => c.pcm.byteLength),
                          a1k: amp(1000), a4k: amp(4000), rms: chunks[20].rms };
          }
          return out;
        }"""
    )
    for rate, r in result.items():
        assert r["chunks"] == 25, rate  # 1 s = 25 chunks of 40 ms
        assert set(r["bytes"]) == {1280}, rate
        assert r["a1k"] == pytest.approx(0.4, rel=0.02), rate
        assert r["a4k"] < 0.4 * 10 ** (-50 / 20), rate  # the 12 kHz tone is filtered out
        assert r["rms"] == pytest.approx(0.4 / 2**0.5, rel=0.05), rate


def test_share_streams_audio_and_frames(page: Page) -> None:
    share(page)
    levels: set[str] = set()
    deadline = time.monotonic() + 3.2
    while time.monotonic() < deadline:
        levels.add(page.get_attribute(".ssw-meter", "data-level") or "")
        page.wait_for_timeout(40)
    audio = sent(page, "audio")
    frames = sent(page, "frame")

    # 100 ms chunks of 16 kHz PCM16, as exact ArrayBuffers, numbered from 0, at 10 per second.
    assert len(audio) >= 25
    assert [m["content"]["seq"] for m in audio] == list(range(len(audio)))
    assert all(m["buffers"][0] == {**m["buffers"][0], "exact": True, "bytes": 3200} for m in audio)
    assert all(len(m["buffers"]) == 1 for m in audio)
    elapsed_ms = audio[-1]["at"] - audio[0]["at"]
    expected = elapsed_ms / 100 + 1
    assert abs(len(audio) - expected) <= 0.1 * expected, (len(audio), elapsed_ms)
    now_ms = time.time() * 1000
    assert all(abs(m["content"]["t"] - now_ms) < 10_000 for m in audio)  # epoch milliseconds

    # JPEG frames of the 1280x720 fake screen scaled to 1024x576, at most one per second.
    assert 2 <= len(frames) <= 4
    for frame in frames:
        assert frame["content"]["width"] == 1024
        assert frame["content"]["height"] == 576
        assert frame["buffers"][0]["exact"] is True
        assert frame["buffers"][0]["head"] == [0xFF, 0xD8, 0xFF]
    gaps = [b["at"] - a["at"] for a, b in zip(frames, frames[1:], strict=False)]
    assert min(gaps) >= 990, gaps
    assert [f["content"]["seq"] for f in frames] == list(range(len(frames)))
    seam = page.evaluate("window.__screenshareWidget.controllers[0].sent")
    assert seam["lastFrame"]["width"] == 1024
    assert seam["lastFrame"]["height"] == 576
    assert seam["lastFrame"]["bytes"] > 1000
    assert seam["audio"] >= len(audio)

    # The microphone meter follows the (spoken, then silent) fake microphone.
    numbers = sorted(float(v) for v in levels if v)
    assert len(numbers) >= 3, levels
    assert numbers[-1] >= 0.3, numbers
    assert page.evaluate("document.querySelector('.ssw-preview').srcObject !== null")

    tracks = page.evaluate(
        "window.__screenshareWidget.controllers[0].tracks().map((t) => [t.kind, t.readyState])"
    )
    assert sorted(tracks) == [["audio", "live"], ["video", "live"]]
    contexts = page.evaluate(
        """(() => { const c = window.__screenshareWidget.controllers[0];
                    return [c.playbackContext.sampleRate, c.playbackContext.state,
                            c.captureContext.state]; })()"""
    )
    assert contexts == [24000, "running", "running"]


def test_playback_is_gapless_and_complete(page: Page) -> None:
    share(page)
    page.evaluate("installTap()")
    # 1.5 s in 40 ms chunks, paced like a live model.
    total = inject_sine(page, 1.5, chunk_ms=40, gen=0, paced=True, complete=True)
    poll(
        page,
        f"""window.__screenshareWidget.controllers[0].stats()
              .then((s) => s.queued === 0 && s.played === {total})""",
        6,
        "the player to drain",
    )
    final = stats(page)
    assert final["played"] == total
    assert final["underruns"] == 0
    assert final["dropped"] == 0
    tap = page.evaluate("readTap()")
    assert tap["last"] - tap["first"] + 1 >= total - 2  # sine zero-crossings may sit at the ends
    # Bit-continuous: no sample-to-sample step beyond the sine's own slope (2*pi*f/fs * A).
    assert tap["maxStep"] <= 2 * 3.14159265 * 440 / OUTPUT_RATE_HZ * 0.5 * 1.01
    # The page reports playback to the kernel every second while audio plays.
    report = poll(
        page,
        f"""model.sent.filter((m) => m.content.kind === "playback")
              .find((m) => m.content.played_ms === {total / 24})""",
        3,
        "a playback report",
    )
    assert report["content"] == {
        "kind": "playback",
        "played_ms": total / 24,
        "queued_ms": 0,
        "underruns": 0,
        "dropped_chunks": 0,
    }


def test_the_echo_gate_judges_the_microphone_only_while_the_model_plays(page: Page) -> None:
    share(page)
    gate = "window.__screenshareWidget.controllers[0].echoGate()"
    page.wait_for_timeout(1_000)
    assert page.evaluate(gate)["judged"] == 0, "the model has not spoken: nothing to judge"
    inject_sine(page, 1.0, chunk_ms=40, gen=0, paced=True, complete=True)
    judged = poll(page, f"{gate}.judged > 0 && {gate}", 3, "the gate to judge")
    assert judged["on"] is True
    # After the voice and its tail (0.5 s, plus the output's latency) the gate lets go.
    poll(page, "window.__screenshareWidget.controllers[0].stats().then((s) => s.queued === 0)",
         5, "the voice to finish")  # fmt: skip
    page.wait_for_timeout(1_000)  # the tail is the scenario
    settled = page.evaluate(gate)["judged"]
    page.wait_for_timeout(500)
    assert page.evaluate(gate)["judged"] == settled, "the gate still judges after the tail"
    # Whatever it held went out: chunks numbered without a gap, none waiting long.
    audio = sent(page, "audio")
    assert [m["content"]["seq"] for m in audio] == list(range(len(audio)))
    ats = [m["at"] for m in audio]
    assert max(b - a for a, b in zip(ats, ats[1:], strict=False)) < 600, ats


def test_interrupted_silences_within_one_quantum_and_drops_stale_audio(page: Page) -> None:
    share(page)
    page.evaluate("installTap()")
    inject_sine(page, 3.0, chunk_ms=100, gen=0)
    poll(
        page,
        "window.__screenshareWidget.controllers[0].stats().then((s) => s.played >= 12000)",
        4,
        "half a second of playback",
    )
    after = page.evaluate(
        """async () => {
          model.kernel({ kind: "interrupted", gen: 1 });
          for (let i = 0; i < 3; i++) model.kernel({ kind: "audio", gen: 0 }, [sinePcm(2400)]);
          return window.__screenshareWidget.controllers[0].stats();
        }"""
    )
    assert after["queued"] == 0
    assert after["generation"] == 1
    assert after["stale"] == 3
    flushed_at = after["flushedAt"]
    assert flushed_at > 0
    poll(
        page,
        f"readTap().then((t) => t.end > {flushed_at + 6000})",
        3,
        "a quarter second of output after the flush",
    )
    tap = page.evaluate("readTap()")
    assert flushed_at <= tap["last"] + RENDER_QUANTUM  # it was playing until the flush
    assert tap["last"] < flushed_at + RENDER_QUANTUM  # silent from the next quantum on
    assert stats(page)["played"] == after["played"]

    # Audio of the new generation plays again.
    inject_sine(page, 0.2, chunk_ms=100, gen=1, complete=True)
    poll(
        page,
        f"""window.__screenshareWidget.controllers[0].stats()
              .then((s) => s.queued === 0 && s.played === {after["played"] + 4800})""",
        3,
        "the new generation to play",
    )
    assert stats(page)["underruns"] == 0


def test_two_views_share_one_capture_and_one_transcript(page: Page) -> None:
    share(page, themes=("light", "light"))
    assert page.evaluate("window.__screenshareWidget.controllers.length") == 1
    assert len(sent(page, "hello")) == 1  # once per model, not per view
    assert page.evaluate("window.__displayStreams.length") == 1
    tracks = page.evaluate("window.__screenshareWidget.controllers[0].tracks().length")
    assert tracks == 2
    assert page.locator(".ssw-share").evaluate_all("(bs) => bs.map((b) => b.disabled)") == [
        True,
        True,
    ]
    assert page.locator(".ssw-preview").evaluate_all(
        "(vs) => vs.map((v) => v.srcObject !== null)"
    ) == [True, True]

    def turn(role: str, text: str, interrupted: bool = False) -> dict[str, Any]:
        return {
            "role": role,
            "text": text,
            "started_at": 1.0,
            "ended_at": 2.0,
            "interrupted": interrupted,
        }

    kernel(
        page,
        {
            "kind": "snapshot",
            "gen": 0,
            "turns": [turn("user", "What is on my screen?"), turn("model", "A test")],
        },
    )
    kernel(page, {"kind": "turn", "index": 1, "turn": turn("model", "A test pattern", True)})
    kernel(page, {"kind": "turn", "index": 2, "turn": turn("user", "Thanks")})
    for view in range(2):
        rows = page.locator(".ssw-transcript").nth(view).locator(".ssw-turn")
        assert rows.count() == 3
        assert rows.evaluate_all(
            "(rs) => rs.map((r) => [r.dataset.role, r.dataset.interrupted ?? null,"
            " r.querySelector('.ssw-text').textContent])"
        ) == [
            ["user", None, "What is on my screen?"],
            ["model", "true", "A test pattern"],
            ["user", None, "Thanks"],
        ]

    # A turn can arrive before the one above it; the transcript keeps index order and
    # scrolls to show the newest row.
    kernel(page, {"kind": "turn", "index": 4, "turn": turn("model", "Five")})
    kernel(page, {"kind": "turn", "index": 3, "turn": turn("user", "Four")})
    for index in range(5, 12):
        kernel(page, {"kind": "turn", "index": index, "turn": turn("user", f"Turn {index}")})
    for view in range(2):
        box = page.locator(".ssw-transcript").nth(view)
        texts = box.locator(".ssw-turn .ssw-text").all_text_contents()
        assert texts[2:6] == ["Thanks", "Four", "Five", "Turn 5"]
        assert len(texts) == 12
        assert box.evaluate("(b) => b.scrollHeight > b.clientHeight")  # it does overflow
        assert box.evaluate("(b) => b.scrollTop + b.clientHeight >= b.scrollHeight - 2")

    # Both views follow the status trait; stopping in one view stops the shared capture.
    page.evaluate("model.set('status', 'live')")
    assert page.locator(".ssw-status").evaluate_all(
        "(ss) => ss.map((s) => [s.textContent, s.dataset.status])"
    ) == [["live", "live"], ["live", "live"]]
    page.locator(".ssw-stop").nth(1).click()
    wait_all_ended(page)
    assert len(sent(page, "stop")) == 1


def test_stop_button_ends_every_track_and_sends_stop(page: Page) -> None:
    share(page)
    poll(page, "window.__screenshareWidget.controllers[0].sent.audio >= 5", 3, "audio")
    page.locator(".ssw-stop").click()
    wait_all_ended(page)
    # The seam still lists the last capture's tracks, now ended.
    assert page.evaluate(
        "window.__screenshareWidget.controllers[0].tracks().map((t) => [t.kind, t.readyState])"
    ) == [["video", "ended"], ["audio", "ended"]]
    stops = sent(page, "stop")
    assert len(stops) == 1
    assert stops[0]["content"]["reason"]
    seam = page.evaluate(
        """(() => { const c = window.__screenshareWidget.controllers[0];
                    return [c.captureContext, c.playbackContext, c.playerNode]; })()"""
    )
    assert seam == [None, None, None]
    assert page.evaluate("document.querySelector('.ssw-preview').srcObject") is None
    audio_count = len(sent(page, "audio"))
    # Idempotent: a second stop sends nothing more; and no audio flows after stop.
    page.evaluate("model.set('status', 'idle')")
    assert page.locator(".ssw-stop").is_disabled()
    page.wait_for_timeout(150)
    assert len(sent(page, "stop")) == 1
    assert len(sent(page, "audio")) == audio_count
    assert page.locator(".ssw-share").is_enabled()


def test_kernel_stop_ends_capture_and_shows_the_reason(page: Page) -> None:
    share(page)
    kernel(page, {"kind": "stop", "reason": "The Live session ended: quota exceeded."})
    wait_all_ended(page)
    notice = page.locator(".ssw-notice")
    assert notice.is_visible()
    assert notice.text_content() == "The Live session ended: quota exceeded."
    assert sent(page, "stop") == []  # the kernel asked: nothing to echo back
    kernel(page, {"kind": "stop", "reason": ""})  # idempotent
    assert sent(page, "stop") == []


def test_audio_chunk_ms_sets_the_microphone_message_length(page: Page) -> None:
    share(page, audio_chunk_ms=40)
    poll(page, "model.sent.filter((m) => m.content.kind === 'audio').length >= 20", 3,
         "0.8 s of 40 ms chunks")  # fmt: skip
    audio = sent(page, "audio")
    assert {m["buffers"][0]["bytes"] for m in audio} == {1280}  # 640 samples at 16 kHz
    elapsed_ms = audio[-1]["at"] - audio[0]["at"]
    assert abs(len(audio) - (elapsed_ms / 40 + 1)) <= 0.15 * len(audio), (len(audio), elapsed_ms)


def test_lagging_ack_shows_the_busy_notice(page: Page) -> None:
    share(page)
    page.evaluate("model.set('status', 'live')")
    poll(page, "window.__screenshareWidget.controllers[0].sent.audio >= 18", 4, "1.8 s of audio")
    kernel(page, {"kind": "ack", "audio_seq": 0, "frame_seq": 0})
    notice = page.locator(".ssw-notice")
    notice.wait_for(state="visible", timeout=2000)
    assert notice.text_content() == BUSY_NOTICE
    # The kernel catches up: the notice goes away.
    page.evaluate(
        """() => model.kernel({ kind: "ack", frame_seq: 1,
             audio_seq: window.__screenshareWidget.controllers[0].sent.audio - 1 })"""
    )
    notice.wait_for(state="hidden", timeout=2000)
    # No ack at all for more than 2 s while live also means busy.
    quiet_since = time.monotonic()
    notice.wait_for(state="visible", timeout=4000)
    assert time.monotonic() - quiet_since >= 1.5
    assert notice.text_content() == BUSY_NOTICE


def test_screen_sharing_ended_keeps_the_voice_conversation(page: Page) -> None:
    share(page)
    seam = "window.__screenshareWidget.controllers[0].sent"
    poll(page, f"{seam}.frames >= 1", 3, "a first frame")
    # What the browser's own "Stop sharing" button does to the display track.
    end_track = """(kind) => {
      const stream = kind === "video" ? window.__displayStreams[0] : null;
      const track = stream ? stream.getVideoTracks()[0] : window.__micTracks[0];
      track.stop();
      track.dispatchEvent(new Event("ended"));
    }"""
    page.evaluate(end_track, "video")
    notice = page.locator(".ssw-notice")
    notice.wait_for(state="visible", timeout=2000)
    assert (notice.text_content() or "").startswith("Screen sharing ended")
    frames, audio = page.evaluate(f"[{seam}.frames, {seam}.audio]")
    poll(page, f"{seam}.audio >= {audio + 15}", 3, "more microphone audio")
    assert page.evaluate(f"{seam}.frames") == frames  # no frames without a screen
    assert page.get_attribute(".ssw-preview-box", "data-active") == "false"
    assert page.evaluate("document.querySelector('.ssw-preview').srcObject") is None
    assert sent(page, "stop") == []
    # When the microphone ends too, nothing is shared any more: the page stops.
    page.evaluate(end_track, "audio")
    stops = poll(page, "model.sent.filter((m) => m.content.kind === 'stop')", 2, "stop")
    assert stops[0]["content"]["reason"] == "Every shared track ended."
    wait_all_ended(page)


#: What the browser's own "Stop sharing" (or an unplugged microphone) does to a track.
END_TRACK = """(kind) => {
  const track = kind === "video"
    ? window.__displayStreams.at(-1).getVideoTracks()[0]
    : window.__micTracks.at(-1);
  track.stop();
  track.dispatchEvent(new Event("ended"));
}"""


def test_a_screen_shared_again_goes_on_in_the_same_capture(page: Page) -> None:
    share(page)
    seam = "window.__screenshareWidget.controllers[0].sent"
    poll(page, f"{seam}.frames >= 1", 3, "a first frame")
    reshare = page.locator(".ssw-reshare")
    assert reshare.is_hidden()
    page.evaluate(END_TRACK, "video")
    reshare.wait_for(state="visible", timeout=2000)
    frames_before = sent(page, "frame")
    # A cancelled picker changes nothing: the conversation goes on, the button stays.
    page.evaluate(
        """() => { const real = navigator.mediaDevices.getDisplayMedia;
             navigator.mediaDevices.getDisplayMedia = async () => {
               navigator.mediaDevices.getDisplayMedia = real;
               throw new DOMException("cancelled", "NotAllowedError"); }; }"""
    )
    reshare.click()
    poll(page, "document.querySelector('.ssw-notice').textContent.startsWith('No screen')", 2)
    assert reshare.is_visible() and sent(page, "stop") == []
    reshare.click()
    reshare.wait_for(state="hidden", timeout=3000)
    assert page.evaluate("window.__displayStreams.length") == 2
    poll(page, f"{seam}.frames >= {len(frames_before) + 1}", 3, "a frame of the new screen")
    assert page.get_attribute(".ssw-preview-box", "data-active") == "true"
    after = sent(page, "frame")[len(frames_before) :]
    capture = sent(page, "start")[0]["content"]["capture"]
    # The same capture: its id and its frame numbers go on; no new start, no stop.
    assert {f["content"]["capture"] for f in after} == {capture}
    told = [m["content"]["what"] for m in sent(page, "device")]
    assert told == ["screen_ended", "screen_shared"], told
    assert after[0]["content"]["seq"] == frames_before[-1]["content"]["seq"] + 1
    assert len(sent(page, "start")) == 1 and sent(page, "stop") == []
    assert page.evaluate("window.__displayStreams[0].getVideoTracks()[0].readyState") == "ended"
    page.click(".ssw-stop")
    wait_all_ended(page)


def test_a_microphone_picked_again_goes_on_in_the_same_capture(page: Page) -> None:
    share(page)
    seam = "window.__screenshareWidget.controllers[0].sent"
    pick = page.locator(".ssw-mic")
    pick.wait_for(state="visible", timeout=2000)
    poll(page, "document.querySelector('.ssw-mic').options.length >= 2", 3, "the microphones")
    labels = page.evaluate("[...document.querySelector('.ssw-mic').options].map((o) => o.text)")
    assert any("Fake" in label for label in labels), labels
    page.evaluate(END_TRACK, "audio")
    notice = page.locator(".ssw-notice")
    poll(page, "document.querySelector('.ssw-notice').textContent.includes('microphone stopped')")
    assert pick.input_value() == ""  # the menu asks for one
    audio = len(sent(page, "audio"))
    page.wait_for_timeout(400)
    assert len(sent(page, "audio")) <= audio + 1  # no chunks of silence: nothing billed
    ended = sent(page, "device")
    assert [m["content"]["what"] for m in ended] == ["mic_ended"]
    frames = page.evaluate(f"{seam}.frames")
    options = page.evaluate(
        "[...document.querySelector('.ssw-mic').options].map((o) => o.value).filter(Boolean)"
    )
    pick.select_option(options[-1])
    poll(page, f"{seam}.audio >= {audio + 10}", 3, "audio from the new microphone")
    chunks = sent(page, "audio")
    assert [m["content"]["seq"] for m in chunks] == list(range(len(chunks)))  # numbering goes on
    assert {m["content"]["capture"] for m in chunks} == {
        sent(page, "start")[0]["content"]["capture"]
    }
    assert pick.input_value() == options[-1]
    assert (notice.text_content() or "").startswith("Listening through")
    changed = sent(page, "device")[-1]["content"]
    assert changed["what"] == "mic_changed" and "Fake" in changed["label"], changed
    assert page.get_attribute(".ssw-notice", "data-busy") == "false"
    assert page.evaluate("window.__micTracks.at(-1).readyState") == "live"
    assert page.evaluate(f"{seam}.frames") >= frames  # the screen went on meanwhile
    assert len(sent(page, "start")) == 1 and sent(page, "stop") == []
    page.click(".ssw-stop")
    wait_all_ended(page)


def test_microphone_denied_reports_and_releases_the_screen(page: Page) -> None:
    page.evaluate(
        """() => {
          navigator.mediaDevices.getUserMedia = () =>
            Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
        }"""
    )
    page.evaluate("mount()")
    page.locator(".ssw-share").click()
    errors = poll(
        page, "model.sent.filter((m) => m.content.kind === 'client_error')", 5, "client_error"
    )
    assert errors[0]["content"]["message"].startswith("Microphone access was denied")
    error = page.locator(".ssw-error")
    assert error.is_visible()
    assert "allow the microphone" in (error.text_content() or "")
    assert page.evaluate(
        "window.__displayStreams[0].getTracks().every((t) => t.readyState === 'ended')"
    )
    assert sent(page, "start") == []
    assert page.locator(".ssw-share").is_enabled()


def test_audio_the_browser_will_not_start_is_an_error_not_silence(page: Page) -> None:
    """A refused AudioContext.resume() (the browser's autoplay rules) stops the Share with a
    sentence in the cell, instead of a live session where the model's voice never plays."""
    page.evaluate(
        """() => {
          AudioContext.prototype.resume = () =>
            Promise.reject(new DOMException("blocked by the autoplay policy", "NotAllowedError"));
        }"""
    )
    page.evaluate("mount()")
    page.locator(".ssw-share").click()
    errors = poll(
        page, "model.sent.filter((m) => m.content.kind === 'client_error')", 10, "client_error"
    )
    message = errors[0]["content"]["message"]
    assert message.startswith("The browser would not start audio for this page")
    error = page.locator(".ssw-error")
    assert error.is_visible()
    assert (error.text_content() or "") == message
    wait_all_ended(page)
    assert sent(page, "start") == []
    assert page.get_attribute(".ssw", "data-phase") == "idle"
    assert page.locator(".ssw-share").is_enabled()


def test_player_stats_answer_in_bounded_time_when_the_player_does_not(page: Page) -> None:
    """stats() of a player whose answers are lost (a stalled audio thread) still resolves,
    with the last statistics, within about a second."""
    share(page)
    poll(page, "!!window.__screenshareWidget.controllers[0].playerNode", 5, "the player")
    result = page.evaluate(
        """async () => {
          const c = window.__screenshareWidget.controllers[0];
          c.playerNode.port.onmessage = null;  // the player's answers go nowhere
          const t0 = performance.now();
          const late = new Promise((resolve) => setTimeout(() => resolve(null), 5000));
          const stats = await Promise.race([c.stats(), late]);
          return { stats, ms: performance.now() - t0 };
        }"""
    )
    assert result["stats"] is not None, "stats() did not answer in 5 s"
    assert result["ms"] < 2000
    assert set(result["stats"]) == {
        "played", "queued", "underruns", "dropped", "stale", "generation", "flushedAt",
    }  # fmt: skip


def test_insecure_page_explains_the_fix(page: Page) -> None:
    page.evaluate("() => { Object.defineProperty(window, 'isSecureContext', { value: false }); }")
    page.evaluate("mount()")
    page.locator(".ssw-share").click()
    error = page.locator(".ssw-error")
    error.wait_for(state="visible", timeout=2000)
    text = error.text_content() or ""
    assert "is not secure, and browsers share the screen and the microphone only" in text
    assert [m["content"]["message"] for m in sent(page, "client_error")] == [text]
    assert page.evaluate("window.__displayStreams.length") == 0


def _denying_frame(page: Page, harness_url: str, mount: str = "mount()") -> Any:
    """The harness in a frame that may not capture, with the widget mounted in it."""
    page.goto(harness_url + "denying-host.html")
    frame = page.frame(url=lambda url: url.endswith("?framed"))
    assert frame is not None
    frame.wait_for_function("window.harnessReady === true", timeout=10_000)
    frame.evaluate(mount)
    return frame


def _open_capture_window(page: Page, frame: Any) -> Page:
    with page.context.expect_page() as opened:
        frame.locator(".ssw-share").click()
    window = opened.value
    window.locator(".ssw-window-share").click()
    poll(frame, "model.sent.some((m) => m.content.kind === 'start')", 10, "the start message")
    return window


def test_a_frame_that_denies_capture_shares_from_a_capture_window(
    page: Page, harness_url: str
) -> None:
    frame = _denying_frame(page, harness_url)
    # Before any click, the cell names the cause and the way.
    notice = frame.locator(".ssw-notice").text_content() or ""
    assert "does not allow screen sharing or the microphone" in notice, notice
    assert frame.locator(".ssw-share").text_content() == "Share from a new window"
    assert frame.evaluate("window.__displayStreams.length") == 0

    window = _open_capture_window(page, frame)
    assert window.title() == "Screen share assistant"
    # Media flows from the window through the widget in the frame, as in a top-level page.
    poll(frame, "model.sent.filter((m) => m.content.kind === 'audio').length >= 10", 5, "audio")
    poll(frame, "model.sent.some((m) => m.content.kind === 'frame')", 5, "a frame")
    audio = sent(frame, "audio")
    assert [m["content"]["seq"] for m in audio] == list(range(len(audio)))
    assert {m["buffers"][0]["bytes"] for m in audio} == {3200}
    seam = "window.__screenshareWidget.controllers[0]"
    # The audio runs in the window's realm, the capture window's own.
    assert frame.evaluate(f"{seam}.captureContext instanceof AudioContext") is False
    assert window.evaluate("window.__displayStreams.length") == 1
    assert "capture window" in (frame.locator(".ssw-notice").text_content() or "")
    assert window.locator(".ssw-window-status").get_attribute("data-live") == "true"
    # The voice plays there.
    inject_sine(frame, 0.5, chunk_ms=40, gen=0, paced=True, complete=True)
    poll(frame, f"{seam}.stats().then((s) => s.played >= 11000 && s)", 5, "the voice to play")

    # Closing the window stops the sharing, and says why.
    window.close()
    stop = poll(frame, "model.sent.find((m) => m.content.kind === 'stop')", 5, "stop")
    assert stop["content"]["reason"] == "The capture window was closed."
    frame.wait_for_selector(".ssw-share:not([disabled])", timeout=5_000)

    # Stop in the cell closes the window.
    window = _open_capture_window(page, frame)
    with window.expect_event("close", timeout=5_000):
        frame.locator(".ssw-stop").click()

    # The notebook's page goes: so does the window, with what it captured.
    window = _open_capture_window(page, frame)
    with window.expect_event("close", timeout=5_000):
        page.goto(harness_url)


def test_where_the_browser_cannot_read_the_frames_policy_a_refusal_offers_the_window(
    page: Page, harness_url: str
) -> None:
    # As in Firefox and Safari, which have no document.featurePolicy.
    page.context.add_init_script(
        "Object.defineProperty(Document.prototype, 'featurePolicy', { get: () => undefined })"
    )
    frame = _denying_frame(page, harness_url)
    assert frame.evaluate("document.featurePolicy") is None
    assert frame.locator(".ssw-share").text_content() == "Share screen & mic"
    assert frame.locator(".ssw-notice").is_hidden()  # nothing known blocks it yet
    frame.locator(".ssw-share").click()
    error = frame.locator(".ssw-error")
    error.wait_for(state="visible", timeout=3000)
    assert "runs in a frame that may not allow" in (error.text_content() or "")
    assert frame.locator(".ssw-share").text_content() == "Share from a new window"
    window = _open_capture_window(page, frame)
    poll(frame, "model.sent.some((m) => m.content.kind === 'audio')", 5, "audio")
    with window.expect_event("close", timeout=5_000):
        frame.locator(".ssw-stop").click()


def test_a_capture_window_never_outlives_its_cell_nor_a_stop(page: Page, harness_url: str) -> None:
    frame = _denying_frame(page, harness_url, "mountViews(1)")
    # Opened, not shared yet, and the cell goes (re-run, cleared): the window goes too.
    with page.context.expect_page() as opened:
        frame.locator(".ssw-share").click()
    with opened.value.expect_event("close", timeout=5_000):
        frame.evaluate("views[0]()")
    # Stop in the cell while the window is still asking for the screen: the window goes.
    frame.evaluate("addView()")
    with page.context.expect_page() as opened:
        frame.locator(".ssw-share").click()
    window = opened.value
    window.evaluate(
        "() => { navigator.mediaDevices.getDisplayMedia = () => new Promise(() => {}); }"
    )
    window.locator(".ssw-window-share").click()
    frame.wait_for_selector(".ssw[data-phase='starting']", timeout=5_000)
    with window.expect_event("close", timeout=5_000):
        frame.locator(".ssw-stop").click()
    frame.wait_for_selector(".ssw[data-phase='idle']", timeout=5_000)


def test_a_capture_window_the_frame_may_not_open_says_so(page: Page, harness_url: str) -> None:
    frame = _denying_frame(page, harness_url)
    frame.evaluate("window.open = () => null")  # a popup blocker, or a sandbox without popups
    frame.locator(".ssw-share").click()
    error = frame.locator(".ssw-error")
    error.wait_for(state="visible", timeout=2000)
    assert (error.text_content() or "").startswith("The capture window could not open")
    assert frame.evaluate("window.__displayStreams.length") == 0


def test_screenshot_live(page: Page) -> None:
    """Light and dark views of a live, emulated session, saved for a human to look at."""
    live_since = time.time() - 83
    share(
        page,
        themes=("light", "dark"),
        status="live",
        live_since=live_since,
        backend="Local Live emulator: no API key is set",
        emulated=True,
        model="gemini-2.5-flash-native-audio-preview",
        voice="Puck",
    )
    turns = [
        ("user", "What is on my screen right now?", False),
        ("model", "A green test pattern with a moving circle and a timestamp.", True),
        ("user", "Can you read the timestamp?", False),
        ("model", "It reads a few seconds past the minute; it keeps counting up.", False),
    ]
    kernel(
        page,
        {
            "kind": "snapshot",
            "gen": 0,
            "turns": [
                {"role": r, "text": t, "started_at": 0, "ended_at": 1, "interrupted": i}
                for r, t, i in turns
            ],
        },
    )
    page.wait_for_function(
        "[...document.querySelectorAll('.ssw-preview')].every((v) => v.videoWidth > 0)",
        timeout=5000,
    )
    assert page.locator(".ssw-timer").first.text_content() == "01:23"
    assert page.locator(".ssw-backend").first.get_attribute("data-emulated") == "true"
    # A responsive kernel, so that the busy notice stays out of the picture.
    page.evaluate(
        """() => model.kernel({ kind: "ack", frame_seq: 0,
             audio_seq: window.__screenshareWidget.controllers[0].sent.audio - 1 })"""
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#views").screenshot(path=str(ARTIFACTS / "widget-live.png"))
    (ARTIFACTS / "widget-live.json").write_text(
        json.dumps({"sent": page.evaluate("window.__screenshareWidget.controllers[0].sent")})
    )


def test_frame_policy_decides_by_change_speech_heartbeat_and_rate(page: Page) -> None:
    result = page.evaluate(
        """() => {
          const h = helpers;
          const rgba = new Uint8ClampedArray([255, 255, 255, 255, 0, 0, 0, 255, 255, 0, 0, 255]);
          const still = new Uint8Array(100).fill(100);
          const moved = still.slice(); moved.fill(200, 0, 3);      // 3 % of the pixels
          const faint = still.slice(); faint.fill(110, 0, 50);     // below PIXEL_DELTA
          const nudged = moved.slice(); nudged[99] = 160;           // 1 % changed
          const o = { minChange: 0.02, heartbeatMs: 10000, intervalMs: 1000, paused: false };
          const p = new h.FramePolicy();
          const log = [];
          const step = (now, thumb, extra = {}) => {
            const reason = p.decide(now, thumb, { ...o, ...extra });
            if (reason) p.sent(now, thumb, reason);
            log.push(reason);
          };
          step(0, still);                  // first
          step(250, moved);                // changed, but within 1 s of the last frame: wait
          step(1000, moved);               // change
          step(2000, moved);               // nothing new since the last frame sent
          p.speechStarted();
          step(2250, moved);               // speech, but the model has this screen: nothing
          p.speechStarted();
          step(2500, nudged);              // speech, and a little changed since: send
          step(12500, nudged);             // heartbeat
          step(13750, still, { paused: true });  // paused: nothing
          return { luma: Array.from(h.luma(rgba)),
                   fractions: [h.changedFraction(still, moved), h.changedFraction(still, faint),
                               h.changedFraction(null, still), h.changedFraction(still, still)],
                   log, counts: p.counts };
        }"""
    )
    assert result["luma"] == [255, 0, 76]
    assert result["fractions"] == [0.03, 0, 1, 0]
    assert result["log"] == ["first", None, "change", None, None, "speech", "heartbeat", None]
    counts = result["counts"]
    assert (counts["checked"], counts["sent"], counts["skipped"]) == (8, 4, 4)
    assert (counts["first"], counts["change"], counts["speech"], counts["heartbeat"]) == (
        1,
        1,
        1,
        1,
    )


def test_a_still_screen_sends_only_heartbeats_and_a_change_goes_within_a_second(
    page: Page,
) -> None:
    page.evaluate("useStillScreen()")
    share(page, heartbeat_s=1.5)
    page.wait_for_timeout(4_500)
    frames = sent(page, "frame")
    reasons = [f["content"]["reason"] for f in frames]
    # A stream's very first picture may still be blank: the real content can follow it as
    # a change. After that, a still screen sends no change.
    assert reasons[0] == "first" and "change" not in reasons[2:], reasons
    assert set(reasons[2:]) <= {"heartbeat", "speech"}, reasons
    times = [f["content"]["t"] for f in frames]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps and min(gaps) >= 990, gaps  # never over 1 fps
    assert max(gaps) <= 1_500 + 400, gaps  # a heartbeat at the latest (checks every 250 ms)
    for reason, gap in zip(reasons[1:], gaps, strict=True):
        # Spaced from each frame's send (its t), however long the encoder took.
        if reason == "heartbeat":
            assert gap >= 1_490, (reasons, gaps)

    changed_at = page.evaluate("changeScreen()")
    poll(
        page,
        f"model.sent.some((m) => m.content.reason === 'change' && m.content.t > {changed_at})",
        3,
        "a change frame",
    )
    change = next(
        f
        for f in sent(page, "frame")
        if f["content"]["reason"] == "change" and f["content"]["t"] > changed_at
    )
    latency = change["content"]["t"] - changed_at
    print(f"change to send: {latency:.0f} ms")
    assert 0 < latency <= 1_000, latency

    # The counters reach the kernel; the filmstrip shows what the kernel says the model got.
    poll(page, "model.sent.some((m) => m.content.kind === 'frame_stats')", 3, "frame stats")
    counts = sent(page, "frame_stats")[-1]["content"]
    assert counts["checked"] == counts["sent"] + counts["skipped"]
    assert counts["checked"] >= 4 * counts["sent"], counts
    kernel(page, {"kind": "frame_sent", "seq": change["content"]["seq"]})
    poll(page, "document.querySelectorAll('.ssw-film').length === 1", 2, "the filmstrip")
    seq = page.get_attribute(".ssw-film", "data-seq")
    assert seq == str(change["content"]["seq"])
    # Stopping reports the last counts: every frame sent is in them.
    page.click(".ssw-stop")
    last = sent(page, "frame_stats")[-1]["content"]
    assert last["sent"] == len(sent(page, "frame")), (last, len(sent(page, "frame")))


#: What a browser without one of the APIs the frame loop prefers looks like to the page.
WITHOUT = {
    # Firefox and Safari: no MediaStreamTrackProcessor, so frames are drawn from a <video>.
    "track-processor": "delete window.MediaStreamTrackProcessor;",
    # A strict content security policy: no worker from a blob URL, so ticks come from the
    # page's timer and JPEGs are encoded on the page.
    "workers": "window.Worker = function () { throw new DOMException('no', 'SecurityError'); };",
}


#: Firefox: speakers at 44.1 kHz (the context's default rate), and no connecting a
#: microphone to a context at another rate.
FIREFOX_RATES = """
const Base = window.AudioContext;
window.AudioContext = class extends Base {
  constructor(options = {}) { super({ sampleRate: 44100, ...options }); }
  createMediaStreamSource(stream) {
    const rate = stream.getAudioTracks()[0]?.getSettings().sampleRate;
    if (rate && rate !== this.sampleRate) {
      throw new DOMException("Connecting AudioNodes from AudioContexts with different " +
        "sample-rate is currently not supported.", "NotSupportedError");
    }
    return super.createMediaStreamSource(stream);
  }
};
"""


def test_a_microphone_the_context_will_not_take_at_its_rate_gets_a_context_at_its_own(
    page: Page,
) -> None:
    page.add_init_script(FIREFOX_RATES)
    page.reload()
    page.wait_for_function("window.harnessReady === true", timeout=10_000)
    share(page)
    seam = "window.__screenshareWidget.controllers[0]"
    mic_rate = page.evaluate(
        f"{seam}.tracks().find((t) => t.kind === 'audio').getSettings().sampleRate"
    )
    assert mic_rate and mic_rate != 44100, mic_rate
    assert page.evaluate(f"{seam}.captureContext.sampleRate") == mic_rate
    poll(page, "model.sent.filter((m) => m.content.kind === 'audio').length >= 10", 3, "audio")
    audio = sent(page, "audio")
    assert {m["buffers"][0]["bytes"] for m in audio} == {3200}  # 100 ms at 16 kHz still
    assert [m["content"]["seq"] for m in audio] == list(range(len(audio)))
    assert page.locator(".ssw-error").is_hidden()


@pytest.mark.parametrize("missing", sorted(WITHOUT))
def test_frames_go_out_without_the_apis_the_loop_prefers(page: Page, missing: str) -> None:
    page.add_init_script(WITHOUT[missing])
    page.reload()
    page.wait_for_function("window.harnessReady === true", timeout=10_000)
    page.evaluate("useStillScreen()")
    share(page, heartbeat_s=1.0)
    seam = "window.__screenshareWidget.controllers[0]"
    poll(page, f"{seam}.sent.frames >= 3", 6, "three frames")
    mode = page.evaluate(f"{seam}.screenMode")
    assert mode == ("video" if missing == "track-processor" else "frames")
    changed_at = page.evaluate("changeScreen()")
    change = poll(
        page,
        f"model.sent.find((m) => m.content.reason === 'change' && m.content.t > {changed_at})",
        3,
        "a change frame",
    )
    # Within the frame interval (1 s: a heartbeat may just have gone) and a check (250 ms).
    assert change["content"]["t"] - changed_at <= 1_000 + 250 + 150
    frames = sent(page, "frame")
    assert all(f["buffers"][0]["head"] == [0xFF, 0xD8, 0xFF] for f in frames)
    assert {(f["content"]["width"], f["content"]["height"]) for f in frames} == {(1024, 576)}


def test_pause_video_stops_frames_and_the_voice_goes_on(page: Page) -> None:
    page.evaluate("useStillScreen()")
    share(page, heartbeat_s=1.0)
    poll(page, "model.sent.some((m) => m.content.kind === 'frame')", 3, "the first frame")
    page.click(".ssw-pause-video")
    assert page.inner_text(".ssw-pause-video") == "Resume video"  # at once, here
    # The kernel writes the trait, asked by a message; the page's model is the kernel's.
    assert sent(page, "set")[-1]["content"] == {
        "kind": "set", "name": "video_paused", "value": True,
    }  # fmt: skip
    assert page.evaluate("model.get('video_paused')") is not True
    assert page.get_attribute(".ssw-pause-video", "data-kernel") == "false"
    frames, audio = len(sent(page, "frame")), len(sent(page, "audio"))
    page.evaluate("changeScreen()")
    page.wait_for_timeout(2_500)  # the media clock: 2.5 s of a changing screen, paused
    assert len(sent(page, "frame")) <= frames + 1  # at most one already being encoded
    assert len(sent(page, "audio")) >= audio + 20  # 100 ms chunks go on
    page.evaluate("model.set('video_paused', true)")  # the kernel took it
    assert page.get_attribute(".ssw-pause-video", "data-kernel") == "true"
    assert page.inner_text(".ssw-pause-video") == "Resume video"
    page.click(".ssw-pause-video")  # resumed here before the kernel has it
    assert sent(page, "set")[-1]["content"]["value"] is False
    poll(page, "model.sent.some((m) => m.content.reason === 'change')", 3, "frames again")
    assert page.evaluate("model.saves") == 0


# ---- the model's voice: volume and mute -----------------------------------------------------

SEAM = "window.__screenshareWidget.controllers[0]"
#: The harness's sine (amplitude 0.5): its RMS, and its largest step between two samples.
SINE_RMS = 0.5 / 2**0.5
SINE_STEP = 2 * 3.14159265 * 440 / OUTPUT_RATE_HZ * 0.5


def volume(page: Page) -> dict[str, Any]:
    """The seam's {volume, muted, gain}: what the page has in force, and the GainNode's
    gain now (None while nothing is shared)."""
    return dict(page.evaluate(f"{SEAM}.volume()"))


def frame_now(page: Page) -> int:
    """The playback context's clock, in 24 kHz frames."""
    return int(page.evaluate(f"Math.round({SEAM}.playbackContext.currentTime * 24000)"))


def heard(page: Page, seconds: float = 0.25) -> dict[str, Any]:
    """What the tap after the gain records over the next ``seconds``: rms, maxStep, peaks."""
    start = frame_now(page)
    end = start + round(seconds * OUTPUT_RATE_HZ)
    poll(page, f"readTap().then((t) => t.end >= {end})", seconds + 3, "the output to be heard")
    return dict(page.evaluate("([a, b]) => tapWindow(a, b)", [start, end]))


def wait_gain(page: Page, target: float, tolerance: float = 0.005) -> float:
    """Wait for the GainNode's gain to come within ``tolerance`` of ``target``; seconds taken."""
    began = time.monotonic()
    poll(page, f"Math.abs({SEAM}.volume().gain - {target}) <= {tolerance}", 3,
         f"the gain to reach {target}")  # fmt: skip
    return time.monotonic() - began


def play_sine(page: Page, seconds: float) -> None:
    """Queue ``seconds`` of the sine as model audio and wait until a quarter second played."""
    inject_sine(page, seconds, chunk_ms=100, gen=0)
    poll(page, f"{SEAM}.stats().then((s) => s.played >= 6000)", 4, "a quarter second played")


def test_the_volume_from_the_kernel_ramps_the_gain_and_the_voice_is_quieter(page: Page) -> None:
    share(page)
    assert volume(page) == {"volume": 1, "muted": False, "gain": 1}
    page.evaluate("installTap('gainNode')")
    play_sine(page, 4.0)
    loud = heard(page)
    assert loud["rms"] == pytest.approx(SINE_RMS, rel=0.02)

    changed_at = frame_now(page)
    page.evaluate("model.set('volume', 0.25)")  # the kernel's update: assistant.volume = 0.25
    assert volume(page)["volume"] == 0.25
    assert wait_gain(page, 0.25) < 0.5
    quiet = heard(page)
    assert quiet["rms"] / loud["rms"] == pytest.approx(0.25, rel=0.03)
    # No click: the gain glides down over several render quanta (a jump would go in one),
    # and no step between two samples is beyond the sine's own.
    ramp = page.evaluate("([a, b]) => tapWindow(a, b)", [changed_at - 1200, changed_at + 4800])
    gliding = [peak for peak in ramp["peaks"] if 0.35 * 0.5 < peak < 0.9 * 0.5]
    assert len(gliding) >= 4, ramp["peaks"]
    assert ramp["maxStep"] <= SINE_STEP * 1.01 + 0.002, ramp["maxStep"]


def test_mute_sends_set_silences_the_voice_and_unmute_brings_it_back(page: Page) -> None:
    share(page)
    mute = page.locator(".ssw-mute")
    assert (mute.get_attribute("aria-pressed"), mute.get_attribute("aria-label")) == (
        "false", "Mute the assistant",
    )  # fmt: skip
    page.evaluate("installTap('gainNode')")
    play_sine(page, 4.0)
    mute.click()
    assert sent(page, "set")[-1]["content"] == {"kind": "set", "name": "muted", "value": True}
    assert (mute.get_attribute("aria-pressed"), mute.get_attribute("aria-label")) == (
        "true", "Unmute the assistant",
    )  # fmt: skip
    # Obeyed here at once, before the kernel writes the trait (the page's model is the kernel's).
    assert page.evaluate("model.get('muted')") is False
    assert volume(page)["muted"] is True
    assert wait_gain(page, 0.0, 1e-3) < 0.5
    played = stats(page)["played"]
    silent = heard(page)
    assert silent["rms"] < 1e-3, silent["rms"]
    assert stats(page)["played"] > played + 4000  # muted, the voice still plays (unheard)
    page.evaluate("model.set('muted', true)")  # the kernel took it
    assert mute.get_attribute("data-kernel") == "true"
    assert mute.get_attribute("aria-pressed") == "true"

    mute.click()
    assert sent(page, "set")[-1]["content"] == {"kind": "set", "name": "muted", "value": False}
    assert mute.get_attribute("aria-label") == "Mute the assistant"
    wait_gain(page, 1.0)
    assert heard(page)["rms"] == pytest.approx(SINE_RMS, rel=0.02)
    assert page.evaluate("model.saves") == 0


def test_the_volume_slider_sets_the_volume_in_every_view_and_follows_python(page: Page) -> None:
    share(page, themes=("light", "light"), volume=0.8)
    sliders = page.locator(".ssw-volume")
    shown = sliders.evaluate_all(
        "(ss) => ss.map((s) => [s.type, s.value, s.min, s.max, s.getAttribute('aria-label')])"
    )
    assert shown == [["range", "80", "0", "100", "Assistant volume"]] * 2
    assert volume(page)["gain"] == pytest.approx(0.8, abs=1e-6)

    sliders.first.fill("30")  # input, then change: what letting go of the slider fires
    assert sent(page, "set")[-1]["content"] == {"kind": "set", "name": "volume", "value": 0.3}
    assert sliders.nth(1).input_value() == "30"  # the other view shows it too
    wait_gain(page, 0.3)
    page.evaluate("model.set('volume', 0.3)")  # the kernel took it

    # While it is dragged (input events), the voice follows and nothing is sent yet; an
    # echo of an older value does not pull it back.
    sets = len(sent(page, "set"))
    sliders.first.evaluate("(s) => { s.value = '45'; s.dispatchEvent(new Event('input')); }")
    wait_gain(page, 0.45)
    assert len(sent(page, "set")) == sets
    sliders.first.evaluate("(s) => s.dispatchEvent(new Event('change'))")  # let go
    assert sent(page, "set")[-1]["content"]["value"] == 0.45
    page.evaluate("model.set('volume', 0.45)")

    page.evaluate("model.set('volume', 0.6)")  # assistant.volume = 0.6 in a cell
    assert sliders.evaluate_all("(ss) => ss.map((s) => s.value)") == ["60", "60"]
    wait_gain(page, 0.6)
    assert page.evaluate("model.saves") == 0


def test_the_volume_holds_for_audio_that_starts_later_and_for_the_next_share(
    page: Page,
) -> None:
    share(page, volume=0.4)
    assert volume(page)["gain"] == pytest.approx(0.4, abs=1e-6)  # from the start: no ramp
    page.evaluate("installTap('gainNode')")
    play_sine(page, 1.0)
    assert heard(page, 0.2)["rms"] == pytest.approx(0.4 * SINE_RMS, rel=0.03)

    page.evaluate("model.set('volume', 0.7); model.set('muted', true)")
    page.locator(".ssw-stop").click()
    wait_all_ended(page)
    assert volume(page) == {"volume": 0.7, "muted": True, "gain": None}
    page.evaluate("model.set('muted', false)")  # from Python, while nothing is shared
    page.locator(".ssw-share").click()
    poll(page, "model.sent.filter((m) => m.content.kind === 'start').length === 2", 10,
         "the second start")  # fmt: skip
    again = volume(page)
    assert (again["volume"], again["muted"]) == (0.7, False)
    assert again["gain"] == pytest.approx(0.7, abs=1e-6)


def test_the_instruction_box_applies_through_the_kernel(page: Page) -> None:
    """Apply sends the text; the box says "applying" until the kernel's value comes back,
    keeps the user's text if the kernel refuses it, and never saves the model's state."""
    page.evaluate("mount(['light'], {system_instruction: 'Old.', instruction_version: 1})")
    state = ".ssw-instruction-state"
    page.click(".ssw-instruction-summary")
    page.fill(".ssw-instruction-text", "New.")
    assert page.inner_text(state) == "edited · Apply to make v2"
    page.click(".ssw-apply")
    assert sent(page, "set")[-1]["content"] == {
        "kind": "set", "name": "system_instruction", "value": "New.",
    }  # fmt: skip
    assert page.inner_text(state) == "applying v2…"
    assert page.is_disabled(".ssw-apply")
    assert page.input_value(".ssw-instruction-text") == "New."
    assert page.evaluate("model.get('system_instruction')") == "Old."  # the kernel's, so far

    # The kernel takes it: its trait comes back, then the new version.
    page.evaluate("model.set('system_instruction', 'New.'); model.set('instruction_version', 2)")
    assert page.inner_text(state).startswith("v2 ·")
    assert page.is_disabled(".ssw-apply") and page.input_value(".ssw-instruction-text") == "New."

    # The kernel refuses one: its error comes, and the box keeps the user's text to fix.
    page.fill(".ssw-instruction-text", "Other.")
    page.click(".ssw-apply")
    assert page.inner_text(state) == "applying v3…"
    page.evaluate("model.set('error', 'The system instruction from the page was not applied')")
    assert page.inner_text(state) == "edited · Apply to make v3"
    assert page.is_enabled(".ssw-apply") and page.input_value(".ssw-instruction-text") == "Other."

    # Longer than the kernel takes from the box: said here, nothing sent.
    sets = len(sent(page, "set"))
    page.fill(".ssw-instruction-text", "x" * 200_001)
    page.click(".ssw-apply")
    assert "Too long to apply: 200,001 characters" in page.inner_text(state)
    assert len(sent(page, "set")) == sets
    assert page.evaluate("model.saves") == 0


def test_the_token_meter_shows_tokens_cost_and_budget(page: Page) -> None:
    texts = page.evaluate(
        """() => [[0, -1, 0, 0], [1234, -1, 0, 0], [1234, 0.00123, 10000, 0.5],
                  [2500000, 12.345, 0, 0]].map(([tokens, costUsd, budgetTokens, budgetUsd]) =>
                    helpers.formatSpend({tokens, costUsd, budgetTokens, budgetUsd}))"""
    )
    assert texts == [
        "",
        "1,234 tokens",
        "1,234 tokens of 10,000 · ≈$0.0012 of $0.50",
        "2,500,000 tokens · ≈$12.35",
    ]
    page.evaluate("mount(['light'], {tokens: 1500, cost_usd: -1, budget_tokens: 3000})")
    assert page.inner_text(".ssw-spend") == "1,500 tokens of 3,000"


def test_the_token_meter_shows_the_last_turn_and_the_next_10_minutes(page: Page) -> None:
    texts = page.evaluate(
        """() => [
          [12345, -1, 3210, 96300, -1], [12345, 0.0123, 3210, 96300, 0.1],
          [800, -1, 800, -1, -1], [50000, -1, 9000, 950, -1], [50000, -1, 9000, 9640, -1],
          [2e6, 3.5, 150000, 1.24e6, 12.5], [2e6, -1, 150000, 0, -1],
        ].map(([tokens, costUsd, lastTurnTokens, projectedTokens, projectedUsd]) =>
          helpers.formatSpend({tokens, costUsd, budgetTokens: 0, budgetUsd: 0, lastTurnTokens,
                               projectedTokens, projectedUsd}))"""
    )
    assert texts == [
        "12,345 tokens · last turn 3,210 · next 10 min ≈ 96k",
        "12,345 tokens · ≈$0.0123 · last turn 3,210 · next 10 min ≈ 96k ($0.1000)",
        "800 tokens · last turn 800",  # no rate yet
        "50,000 tokens · last turn 9,000 · next 10 min ≈ 950",
        "50,000 tokens · last turn 9,000 · next 10 min ≈ 9.6k",
        "2,000,000 tokens · ≈$3.50 · last turn 150,000 · next 10 min ≈ 1.2M ($12.50)",
        "2,000,000 tokens · last turn 150,000 · next 10 min ≈ 0",
    ]
    # The budget parts stay; the view shows the projection only while a session runs.
    traits = {"tokens": 40000, "cost_usd": 0.25, "budget_tokens": 100000, "budget_usd": 1,
              "last_turn_tokens": 6000, "projected_10min_tokens": 120000,
              "projected_10min_usd": 0.8}  # fmt: skip
    page.evaluate("(traits) => mount(['light'], {...traits, status: 'live'})", traits)
    assert page.inner_text(".ssw-spend") == (
        "40,000 tokens of 100,000 · ≈$0.2500 of $1.00 · last turn 6,000 · next 10 min ≈ 120k"
        " ($0.8000)"
    )
    page.evaluate("model.set('status', 'idle')")
    poll(page, "!document.querySelector('.ssw-spend').innerText.includes('next')", 3)
    assert page.inner_text(".ssw-spend") == (
        "40,000 tokens of 100,000 · ≈$0.2500 of $1.00 · last turn 6,000"
    )


def test_the_latency_trace_names_chunks_and_times_playback_and_barge_in(page: Page) -> None:
    # The page fingerprints PCM as the benchmarks do in Python.
    rng = np.random.default_rng(3)
    blobs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (0, 1, 2, 3200, 4801)]
    hashes = page.evaluate(
        "(blobs) => blobs.map((b) => helpers.pcmHash(new Uint8Array(b)))",
        [list(b) for b in blobs],
    )
    assert hashes == [pcm_hash(b) for b in blobs]

    share(page)
    page.evaluate("installTap()")
    page.evaluate("window.__screenshareWidget.controllers[0].startTrace()")
    inject_sine(page, 2.0, chunk_ms=100, gen=0)
    poll(page, "window.__screenshareWidget.controllers[0].stats().then((s) => s.played >= 12000)",
         4, "half a second of playback")  # fmt: skip
    page.evaluate("model.kernel({ kind: 'interrupted', gen: 1 })")
    page.wait_for_timeout(300)
    trace = page.evaluate("window.__screenshareWidget.controllers[0].takeTrace()")

    # Microphone chunks sent: epoch milliseconds and fingerprints, in order.
    now_ms = time.time() * 1000
    assert len(trace["up"]) >= 3
    assert all(abs(t - now_ms) < 10_000 and 0 <= h < 2**32 for t, h in trace["up"])
    assert [t for t, _ in trace["up"]] == sorted(t for t, _ in trace["up"])
    # Model chunks that played: their first sample left the output after they arrived, in
    # order, 100 ms apart in the output; the flushed rest is not handed over yet.
    played = [row for row in trace["down"] if row[2] is not None]
    assert 5 <= len(played) < 20, trace["down"]
    assert all(out >= received for received, _, out in played)
    starts = [out for _, _, out in played]
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == pytest.approx(
        [100.0] * (len(starts) - 1), abs=1.0
    )
    # The barge-in: audio was playing, and the first quantum after the flush was silent, a
    # whole number of quanta after the page got ``interrupted`` (the next one, unless the
    # machine is loaded: the benchmark reports how many).
    [(received, quanta, silent_at, samples, playing)] = trace["interrupts"]
    assert playing is True
    assert samples == 0
    assert quanta == int(quanta) and 0 <= quanta <= 4
    assert silent_at >= received
    # What was taken is gone; the trace goes on. The flushed chunks come with ``all``.
    again = page.evaluate("window.__screenshareWidget.controllers[0].takeTrace()")
    assert again["interrupts"] == [] and again["down"] == [] and len(again["up"]) <= 5
    rest = page.evaluate("window.__screenshareWidget.controllers[0].takeTrace(true)")
    assert len(rest["down"]) == 20 - len(played)  # 2 s in 100 ms chunks
    assert all(out is None for _, _, out in rest["down"])


# ---- lifecycle: capture belongs to a visible view ---------------------------------------------


def share_in_views(page: Page, count: int = 1, **traits: Any) -> str:
    """Mount ``count`` views, click Share in the first; the capture id of ``start``."""
    page.evaluate("([count, traits]) => mountViews(count, traits)", [count, traits])
    page.locator(".ssw-share").first.click()
    start = poll(page, "model.sent.find((m) => m.content.kind === 'start')", 10, "start")
    poll(page, "window.__screenshareWidget.controllers[0].sent.audio >= 2", 3, "audio")
    return str(start["content"]["capture"])


def tracks_live(page: Page) -> bool:
    return bool(
        page.evaluate(
            """window.__screenshareWidget.controllers[0].tracks()
                 .every((t) => t.readyState === 'live')"""
        )
    )


def test_capture_ends_with_the_last_view_and_a_rerender_keeps_it(page: Page) -> None:
    capture = share_in_views(page, 2)
    page.evaluate("views[0]()")  # one of two views goes: the other still shows it
    page.wait_for_timeout(1_000)
    assert tracks_live(page)
    page.evaluate("views[1](); addView()")  # a re-render: the view comes straight back
    page.wait_for_timeout(1_000)
    assert tracks_live(page) and sent(page, "stop") == []
    gone = page.evaluate("performance.now()")
    page.evaluate("views[2]()")  # the last view goes
    wait_all_ended(page)
    took = page.evaluate("performance.now()") - gone
    assert took <= 1_000, took
    contexts = page.evaluate(
        """(() => { const c = window.__screenshareWidget.controllers[0];
                    return [c.captureContext, c.playbackContext]; })()"""
    )
    assert contexts == [None, None]
    stops = sent(page, "stop")
    assert [m["content"]["capture"] for m in stops] == [capture]
    assert "No view of the assistant is left" in stops[0]["content"]["reason"]
    # A view shown again later starts idle, and can share again.
    page.evaluate("addView()")
    assert page.locator(".ssw-share").last.is_enabled()


def test_a_kernel_restart_ends_capture_disables_share_and_says_so(page: Page) -> None:
    share_in_views(page)
    page.evaluate("model.emit('comm_live_update')")  # what ipywidgets does on a restart
    wait_all_ended(page)
    view = page.locator(".ssw").first
    assert "The kernel restarted: run the cell again." in view.locator(".ssw-error").inner_text()
    assert view.locator(".ssw-share").is_disabled()
    assert view.locator(".ssw-stop").is_disabled()
    assert view.locator(".ssw-status").inner_text() == "disconnected"
    sent_before = page.evaluate("model.sent.length")
    page.evaluate("model.set('status', 'live')")  # a stale status changes nothing
    # Even a Share that gets through (the button forced on) starts nothing.
    page.evaluate("document.querySelector('.ssw-share').disabled = false")
    page.locator(".ssw-share").first.click()
    page.wait_for_timeout(2_500)  # longer than a beat
    assert page.evaluate("model.sent.length") == sent_before  # nothing goes to a dead kernel
    assert page.evaluate("window.__displayStreams.length") == 1  # no new capture
    assert sent(page, "stop") == []


def test_a_kernel_connection_that_refuses_sends_ends_capture(page: Page) -> None:
    share_in_views(page)
    page.evaluate("() => { model.send = () => { throw new Error('Kernel is disposed'); }; }")
    wait_all_ended(page)
    error = page.locator(".ssw-error").first.inner_text()
    assert "The kernel is gone (shut down, restarted or disconnected)" in error
    assert page.locator(".ssw-share").first.is_disabled()


def test_the_page_beats_while_a_session_runs_or_it_shares(page: Page) -> None:
    page.evaluate("mountViews(1)")
    page.wait_for_timeout(2_500)
    assert sent(page, "beat") == []  # an idle assistant keeps nothing alive: no beat
    page.evaluate("model.set('status', 'live')")  # a session started from Python
    first = poll(page, "model.sent.find((m) => m.content.kind === 'beat')", 1, "a beat at once")
    assert first["content"]["capture"] == "" and first["content"]["views"] == 1
    poll(page, "model.sent.filter((m) => m.content.kind === 'beat').length >= 2", 4, "beats")
    page.locator(".ssw-share").first.click()
    start = poll(page, "model.sent.find((m) => m.content.kind === 'start')", 10, "start")
    capture = start["content"]["capture"]
    beat = poll(
        page,
        f"model.sent.find((m) => m.content.kind === 'beat' && m.content.capture === '{capture}')",
        5,
        "a beat that names the capture",
    )
    assert beat["content"]["page"] == first["content"]["page"]
    page.locator(".ssw-stop").first.click()
    page.evaluate("model.set('status', 'idle')")  # the kernel's session ended
    beats = len(sent(page, "beat"))
    page.wait_for_timeout(2_500)
    assert len(sent(page, "beat")) == beats  # the beat stopped with the session


def test_sharing_taken_over_elsewhere_stops_here_without_stopping_the_session(
    page: Page,
) -> None:
    capture = share_in_views(page)
    kernel(page, {"kind": "capture", "capture": capture})  # our own: nothing happens
    page.wait_for_timeout(200)
    assert tracks_live(page)
    kernel(page, {"kind": "capture", "capture": "another-window"})
    wait_all_ended(page)
    assert sent(page, "stop") == []  # the session goes on, from the other page
    assert "Sharing moved to another view" in page.locator(".ssw-notice").inner_text()


def test_a_page_that_shares_nothing_in_a_live_session_says_so(page: Page) -> None:
    page.evaluate("mountViews(1, {status: 'live', live_since: Date.now() / 1000})")
    notice = page.locator(".ssw-notice")
    assert "A session is running, but this page shares nothing" in notice.inner_text()
    assert page.locator(".ssw-share").is_enabled() and page.locator(".ssw-stop").is_enabled()
    others = page.locator(".ssw-others")
    assert others.is_hidden()
    page.evaluate("model.set('others_live', 1)")
    assert others.inner_text().startswith("Another assistant in this kernel also has a session")
    page.evaluate("model.set('others_live', 2)")
    assert others.inner_text().startswith("2 other assistants in this kernel also have")


def test_an_error_that_goes_takes_its_notice_with_it(page: Page) -> None:
    share_in_views(page)
    error = "The model x is not available for the Live API (1008): pass model=..."
    page.evaluate("(e) => model.set('error', e)", error)
    kernel(page, {"kind": "stop", "reason": error})
    wait_all_ended(page)
    assert page.locator(".ssw-error").inner_text() == error
    page.evaluate("model.set('error', '')")
    assert page.locator(".ssw-error").is_hidden()
    assert page.locator(".ssw-notice").is_hidden()


def test_a_view_that_opens_with_history_follows_the_newest_turn(page: Page) -> None:
    """A reopened notebook renders the view before it is laid out; the transcript must
    still show the newest turns, and follow new ones, unless the user scrolled up."""
    page.evaluate("mountViews(0)")
    turns = [
        {"role": "user" if i % 2 else "model", "text": f"Turn {i}", "started_at": 1.0,
         "ended_at": 2.0, "interrupted": False}
        for i in range(30)
    ]  # fmt: skip
    kernel(page, {"kind": "snapshot", "gen": 0, "turns": turns})
    page.evaluate("addView(false)")  # rendered detached, as JupyterLab does
    page.evaluate("document.getElementById('views').append(window.lastViewEl)")
    box = page.locator(".ssw-transcript")
    at_bottom = (
        "(b) => b.scrollHeight > b.clientHeight"
        " && b.scrollTop + b.clientHeight >= b.scrollHeight - 2"
    )
    poll(page, f"({at_bottom})(document.querySelector('.ssw-transcript'))", 3, "the newest turn")
    new_turn = {**turns[0], "text": "Turn 30"}
    kernel(page, {"kind": "turn", "index": 30, "turn": new_turn})
    assert box.evaluate(at_bottom)
    box.evaluate("(b) => { b.scrollTop = 0; b.dispatchEvent(new Event('scroll')); }")
    kernel(page, {"kind": "turn", "index": 31, "turn": {**turns[0], "text": "Turn 31"}})
    assert box.evaluate("(b) => b.scrollTop") == 0  # the user reads older turns: left alone


def test_a_page_that_opens_after_a_session_ended_says_how(page: Page) -> None:
    page.evaluate("mountViews(1)")
    kernel(page, {"kind": "snapshot", "gen": 0, "turns": [], "ended": "The page was closed."})
    assert page.locator(".ssw-notice").inner_text() == "The page was closed."
