// @ts-check
/**
 * The microphone capture processor (AudioWorkletGlobalScope). Microphone at the device rate
 * -> low-pass FIR -> fractional-position linear interpolation to 16 kHz -> PCM16 chunks of
 * `chunkSamples`, posted with their RMS (the ArrayBuffer is transferred).
 *
 * Built to a string by js/build.mjs and loaded from a Blob URL (the widget's own module has no
 * usable base URL). Options: {taps: Float32Array | null, outRate: Hz, chunkSamples}.
 * Internal module.
 */

import { sampleToPcm16 } from "../pcm.js";
import { CAPTURE_PROCESSOR } from "./names.js";

class SswCapture extends AudioWorkletProcessor {
  /** @param {AudioWorkletNodeOptions} options */
  constructor(options) {
    super();
    const o = options.processorOptions;
    /** @type {Float32Array | null} null to skip filtering */
    this.taps = o.taps;
    const n = this.taps ? this.taps.length : 0;
    this.history = new Float32Array(2 * n); // each sample stored twice: the last n are contiguous
    this.write = 0;
    this.step = sampleRate / o.outRate; // input samples per output sample
    this.passThrough = sampleRate === o.outRate;
    this.previous = 0; // filtered input sample before the current one
    this.phase = 0; // next output position after 'previous', in input samples, in [0, 1)
    this.chunk = new Int16Array(o.chunkSamples);
    this.filled = 0;
    this.sumSquares = 0;
  }

  /** @param {number} x */
  filter(x) {
    const taps = this.taps;
    if (!taps) return x;
    const n = taps.length;
    const h = this.history;
    h[this.write] = x;
    h[this.write + n] = x;
    this.write = this.write + 1 === n ? 0 : this.write + 1;
    let acc = 0;
    for (let i = 0, j = this.write; i < n; i++, j++) acc += taps[i] * h[j];
    return acc;
  }

  /** @param {number} y */
  emit(y) {
    const c = y > 1 ? 1 : y < -1 ? -1 : y;
    this.sumSquares += c * c;
    this.chunk[this.filled++] = sampleToPcm16(c);
    if (this.filled === this.chunk.length) {
      const rms = Math.sqrt(this.sumSquares / this.filled);
      const pcm = this.chunk.buffer;
      this.port.postMessage({ pcm, rms }, [pcm]);
      this.chunk = new Int16Array(this.filled);
      this.filled = 0;
      this.sumSquares = 0;
    }
  }

  /** @param {Float32Array[][]} inputs */
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true; // nothing connected yet
    const x = input[0]; // the node down-mixes to one channel
    for (let i = 0; i < x.length; i++) {
      const y = this.filter(x[i]);
      if (this.passThrough) {
        this.emit(y);
        continue;
      }
      while (this.phase < 1) {
        this.emit(this.previous + (y - this.previous) * this.phase);
        this.phase += this.step;
      }
      this.phase -= 1;
      this.previous = y;
    }
    return true;
  }
}

registerProcessor(CAPTURE_PROCESSOR, SswCapture);
