// @ts-check
/**
 * The echo gate: the second defence, after the browser's echo canceller, against the model
 * hearing its own voice from the speakers. While the model's voice is audible (and for a tail
 * after it, the room's echo and the canceller's), the microphone is judged in 20 ms frames:
 * a run of loud frames at least OPEN_MS long is the user (the gate opens, and stays open for
 * HOLD_MS after the last loud frame); a shorter run, and every quiet frame, is what the
 * canceller let through, and is ducked by DUCK_DB before it is sent. Chrome's canceller lets
 * bursts of 40-100 ms through when the echo is as loud as the user; the gate removes them,
 * and delays the start of a barge-in by at most OPEN_MS (the frames of a run wait in the gate
 * until it is decided, then go unchanged). When the model is silent, or muted, the gate does
 * nothing and delays nothing.
 *
 * Pure and synchronous, so it is tested in node. Internal module.
 */

import { INPUT_RATE_HZ } from "./pcm.js";

/** The gate's analysis frame (ms), as a server's VAD frames audio. */
export const GATE_FRAME_MS = 20;
/** A frame at least this loud (dBFS, RMS) may be the user's voice. */
export const OPEN_DBFS = -48;
/** A run of loud frames this long (ms) opens the gate: longer than the canceller's leaks. */
export const OPEN_MS = 160;
/** The gate stays open this long (ms) after the last loud frame: the gaps between words. */
export const HOLD_MS = 600;
/** How much a ducked frame is attenuated (dB). */
export const DUCK_DB = 40;
/** The gate keeps judging this long (ms) after the model's voice stopped: the echo's tail. */
export const ECHO_TAIL_MS = 500;

const FRAME_SAMPLES = (INPUT_RATE_HZ * GATE_FRAME_MS) / 1000;
const DUCK_FACTOR = 10 ** (-DUCK_DB / 20);
const OPEN_FRAMES = Math.ceil(OPEN_MS / GATE_FRAME_MS);
const HOLD_FRAMES = Math.ceil(HOLD_MS / GATE_FRAME_MS);
const OPEN_RMS = 32768 * 10 ** (OPEN_DBFS / 20); // in PCM16 units

/**
 * A microphone chunk on its way to the kernel: PCM16 at 16 kHz, what the capture worklet
 * measured, and when it reached the page (ms since the epoch).
 * @typedef {{pcm: ArrayBuffer, rms: number, t: number}} GateChunk
 */

/**
 * What the gate did, counted in 20 ms frames since the Share.
 * @typedef {object} GateCounts
 * @property {number} judged frames judged while the model was audible
 * @property {number} ducked of those, frames attenuated
 * @property {number} opened times a loud run opened the gate
 */

/** @param {Int16Array} frame @returns {boolean} at least OPEN_DBFS */
function isLoud(frame) {
  let sum = 0;
  for (let i = 0; i < frame.length; i++) sum += frame[i] * frame[i];
  return Math.sqrt(sum / frame.length) >= OPEN_RMS;
}

/** @param {Int16Array} frame attenuated by DUCK_DB, in place */
function duck(frame) {
  for (let i = 0; i < frame.length; i++) frame[i] = Math.round(frame[i] * DUCK_FACTOR);
}

export class EchoGate {
  constructor() {
    /** @type {GateChunk[]} chunks held because a frame of theirs is undecided, oldest first */
    this.held = [];
    /** @type {{chunk: GateChunk, frame: Int16Array}[]} the loud run being judged */
    this.run = [];
    this.openFrames = 0; // frames the gate stays open for
    /** @type {GateCounts} */
    this.counts = { judged: 0, ducked: 0, opened: 0 };
  }

  /**
   * Judge one chunk. Returns the chunks that may go now, in order (none while a loud run at
   * the end of this chunk is undecided; at most OPEN_MS of audio waits).
   * @param {GateChunk} chunk its PCM may be attenuated in place
   * @param {boolean} audible the model's voice (or its tail) may be in the microphone
   * @returns {GateChunk[]}
   */
  push(chunk, audible) {
    const samples = new Int16Array(chunk.pcm);
    for (let at = 0; at < samples.length; at += FRAME_SAMPLES) {
      this.judge(chunk, samples.subarray(at, Math.min(at + FRAME_SAMPLES, samples.length)), audible);
    }
    this.held.push(chunk);
    const waiting = this.run.length > 0 ? this.held.indexOf(this.run[0].chunk) : this.held.length;
    return this.held.splice(0, waiting);
  }

  /**
   * @param {GateChunk} chunk
   * @param {Int16Array} frame
   * @param {boolean} audible
   */
  judge(chunk, frame, audible) {
    const loud = isLoud(frame);
    if (!audible) {
      this.run = []; // the echo is gone: what was being judged goes as it is
      this.openFrames = loud ? HOLD_FRAMES : Math.max(0, this.openFrames - 1);
      return;
    }
    this.counts.judged++;
    if (this.openFrames > 0) {
      this.openFrames = loud ? HOLD_FRAMES : this.openFrames - 1;
      return;
    }
    if (!loud) {
      for (const judged of this.run) duck(judged.frame);
      this.counts.ducked += this.run.length + 1;
      this.run = [];
      duck(frame);
      return;
    }
    this.run.push({ chunk, frame });
    if (this.run.length >= OPEN_FRAMES) {
      this.run = []; // the user: the run goes unchanged
      this.openFrames = HOLD_FRAMES;
      this.counts.opened++;
    }
  }

  /** @returns {GateChunk[]} what the gate holds, unchanged (the capture ends) */
  drain() {
    this.run = [];
    return this.held.splice(0);
  }
}
