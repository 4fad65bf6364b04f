// @ts-check
/**
 * The browser half of screenshare-widget: one click shares the screen and the microphone with
 * the kernel, which relays them to Gemini Live and sends the model's voice back to play here.
 *
 * Sources: js/ (this file is the entry); js/build.mjs bundles them into the one module
 * anywidget loads, screenshare_widget/static/widget.js. anywidget loads it from a blob: URL,
 * so the two AudioWorklet processors (js/worklets/) are built into strings and loaded through
 * Blob URLs of their own.
 *
 * Shape (anywidget front-end module): the default export is a factory that anywidget calls once
 * per widget model. Its closure holds that model's controller: capture, playback, transcript and
 * the frame loop exist once per model, however many views display it. `initialize` creates the
 * controller; `render` only builds one view's DOM and subscribes to it. A factory is needed
 * because anywidget hands `initialize` and every `render` a different proxy of the same model
 * (so the proxy cannot key a lookup), and marimo shares one module instance between widgets.
 *
 * Test seam (not an API; created by the first `initialize`, never at import):
 * `globalThis.__screenshareWidget.controllers` lists one object per live controller with
 *   - `captureContext`, `playbackContext` (AudioContext | null), `playerNode` (the player's
 *     AudioWorkletNode), `gainNode` (the GainNode after it, the volume), null while not sharing;
 *   - `volume()`: {volume, muted, gain}: the volume (0..1) and mute in force in the page, and
 *     the GainNode's `gain.value` now (null while not sharing);
 *   - `tracks()`: the current (or last) capture's MediaStreamTracks, ended ones included;
 *   - `stats()`: Promise of {played, queued, underruns, dropped, stale, generation, flushedAt},
 *     counts in 24 kHz samples (flushedAt: the audio frame of the last flush, -1 if none);
 *   - `sent`: {audio, frames, lastFrame: {width, height, bytes}} counted since the page loaded;
 *   - `startTrace()` and `takeTrace()`: the latency trace the benchmarks read (see trace.js).
 *
 * The named exports are for the tests and the benchmarks, not an API.
 */

import { Controller } from "./controller.js";
import { registerSeam } from "./trace.js";
import { View } from "./view.js";

export { BROWSER_KINDS, KERNEL_KINDS, LIMITS, newCaptureId } from "./protocol.js";
export {
  designLowpass, exactBuffer, floatToPcm16, pcm16ToFloat, pcmHash, resamplerTaps, rmsToLevel,
  sampleToPcm16,
} from "./pcm.js";
export {
  changedFraction, fitSize, FramePolicy, luma, PIXEL_DELTA, THUMB_HEIGHT, THUMB_WIDTH,
} from "./frame-policy.js";
export { formatElapsed, formatSpend } from "./format.js";
export { CAPTURE_PROCESSOR, PLAYER_PROCESSOR } from "./worklets/names.js";
export { CAPTURE_WORKLET_SOURCE } from "./capture.js";
export { PLAYER_WORKLET_SOURCE } from "./player.js";

/** @typedef {import("./model.js").WidgetModel} WidgetModel */

/**
 * anywidget calls this once per widget model; the closure is that model's controller.
 * @returns {{
 *   initialize: (ctx: {model: WidgetModel, signal?: AbortSignal}) => () => void,
 *   render: (ctx: {model: WidgetModel, el: HTMLElement, signal?: AbortSignal}) => () => void,
 * }}
 */
export default function screenshareWidget() {
  /** @type {Controller | null} */
  let controller = null;
  /** @type {(() => void) | null} */
  let unregister = null;

  function dispose() {
    unregister?.();
    controller?.dispose();
    controller = null;
    unregister = null;
  }

  /** @param {WidgetModel} model */
  function ensureController(model) {
    if (!controller) {
      controller = new Controller(model);
      unregister = registerSeam(controller.seam());
      controller.on("gone", () => {
        unregister?.();
        unregister = null;
      });
    }
    return controller;
  }

  return {
    initialize({ model, signal }) {
      ensureController(model);
      signal?.addEventListener("abort", dispose, { once: true });
      return dispose;
    },

    render({ model, el, signal }) {
      const ctl = ensureController(model);
      ctl.viewAdded();
      const view = new View(ctl, model, el);
      signal?.addEventListener("abort", view.cleanup, { once: true });
      return view.cleanup;
    },
  };
}
