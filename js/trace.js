// @ts-check
/**
 * Benchmark instrumentation and the test seam. Internal module; off unless a benchmark or a
 * test asks (`startTrace()` through the seam), so the media paths only pay a null check.
 *
 * - `LatencyTrace` (main thread): names microphone and model chunks and times them;
 * - `PlayerTrace` (the player worklet's thread): when each traced chunk's first sample is
 *   rendered, and the first quantum after a traced flush;
 * - `registerSeam`: `globalThis.__screenshareWidget.controllers`, which the browser tests and
 *   the benchmarks read (see js/widget.js for what each entry holds).
 */

import { pcmHash } from "./pcm.js";

/** Render quantum of the Web Audio API (frames). */
export const RENDER_QUANTUM = 128;
/** A traced model chunk that has not played after this long was dropped or flushed (ms). */
export const TRACE_GIVE_UP_MS = 10_000;
/** Most chunk entries the player keeps between two `trace` requests. */
const MAX_PLAYER_ENTRIES = 100_000;

/** @returns {number} wall-clock ms, comparable with Python's `time.time()` on this machine */
const wallNow = () => performance.timeOrigin + performance.now();

/**
 * What the player worklet reports: [id, frame] when a chunk's first sample is rendered;
 * ["flush", id, frame, samples, playing] for the first quantum rendered after a flush.
 * @typedef {[number, number] | ["flush", number, number, number, boolean]} PlayerEntry
 */

/**
 * The latency trace the benchmarks read through the test seam; off until `startTrace()`.
 * Times are wall-clock milliseconds (performance.timeOrigin + performance.now()), so they
 * compare with the emulator's `time.time()` on the same machine; chunks are named by `pcmHash`.
 *
 * - `up`: [sent, hash] per microphone chunk, stamped when the capture worklet's chunk reaches
 *   the main thread and is sent to the kernel;
 * - `down`: [received, hash, output] per model chunk: when it reached the page and when its
 *   first sample left the audio output (AudioContext.getOutputTimestamp), null if it never
 *   played (flushed or stale);
 * - `interrupts`: [received, quanta, silentAt, samples, playing] per `interrupted`: render
 *   quanta from the page getting it to the first quantum rendered after the flush, when that
 *   quantum left the output, the model samples in it (0: silent), and whether audio was
 *   playing when it came.
 */
export class LatencyTrace {
  constructor() {
    /** @type {[number, number][]} */
    this.up = [];
    /** @type {Map<number, [number, number, number | null]>} */
    this.down = new Map();
    this.nextId = 0;
    /** @type {Map<number, [number, number]>} per flush id: [received, playback frame then] */
    this.pendingInterrupts = new Map();
    /** @type {any[][]} player entries whose request timed out; settled with the next ones */
    this.orphans = [];
    /** @type {[number, number, number, number, boolean][]} */
    this.interrupts = [];
  }

  /**
   * A microphone chunk leaves for the kernel at `t` (wall ms).
   * @param {ArrayBuffer} pcm
   * @param {number} t
   */
  micChunk(pcm, t) {
    this.up.push([t, pcmHash(new Uint8Array(pcm))]);
  }

  /**
   * A model chunk reached the page.
   * @param {DataView} view its PCM16
   * @returns {number} the trace id the player reports it under
   */
  modelChunk(view) {
    const id = this.nextId++;
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    this.down.set(id, [wallNow(), pcmHash(bytes), null]);
    return id;
  }

  /**
   * An `interrupted` reached the page while `context` plays.
   * @param {BaseAudioContext} context
   * @returns {number} the trace id of the flush
   */
  interrupt(context) {
    const id = this.nextId++;
    const frame = Math.round(context.currentTime * context.sampleRate);
    this.pendingInterrupts.set(id, [wallNow(), frame]);
    return id;
  }

  /** @returns {{up: any[], down: any[], interrupts: any[]}} only the microphone's, taken */
  takeUp() {
    const up = this.up;
    this.up = [];
    return { up, down: [], interrupts: [] };
  }

  /**
   * Resolve the player's entries against the playback clock and hand over what is final
   * (with `all`, every model chunk received, played or not).
   * @param {any[][]} entries from the player worklet
   * @param {AudioContext} context
   * @param {boolean} all
   * @param {number} [timeOrigin] the context's window's `performance.timeOrigin` (its
   *   output timestamps are on that window's clock: a capture window's, maybe)
   */
  settle(entries, context, all, timeOrigin = performance.timeOrigin) {
    const stamp = context.getOutputTimestamp();
    const rate = context.sampleRate;
    /** @param {number} frame */
    const toWall = (frame) =>
      timeOrigin +
      (stamp.performanceTime ?? 0) +
      (frame / rate - (stamp.contextTime ?? 0)) * 1000;
    const pending = [...this.orphans, ...entries];
    this.orphans = [];
    for (const entry of pending) this.#resolve(entry, toWall);
    const down = this.#finalDown(all);
    const taken = { up: this.up, down, interrupts: this.interrupts };
    this.up = [];
    this.interrupts = [];
    return taken;
  }

  /**
   * @param {any[]} entry a PlayerEntry
   * @param {(frame: number) => number} toWall
   */
  #resolve(entry, toWall) {
    if (entry[0] === "flush") {
      const [, id, frame, samples, playing] = entry;
      const asked = this.pendingInterrupts.get(id);
      if (!asked) return;
      this.pendingInterrupts.delete(id);
      const quanta = (frame - asked[1]) / RENDER_QUANTUM;
      this.interrupts.push([asked[0], quanta, toWall(frame), samples, playing]);
    } else {
      const row = this.down.get(entry[0]);
      if (row) row[2] = toWall(entry[1]);
    }
  }

  /**
   * The model chunks that played, gave up, or (with `all`) every one, taken out.
   * @param {boolean} all
   */
  #finalDown(all) {
    const now = wallNow();
    const down = [];
    for (const [id, row] of this.down) {
      if (all || row[2] !== null || now - row[0] > TRACE_GIVE_UP_MS) {
        down.push(row);
        this.down.delete(id);
      }
    }
    return down;
  }
}

/**
 * The player worklet's half of the trace: it costs a map lookup per chunk and nothing per
 * sample. Pure, so it runs in the AudioWorkletGlobalScope and under node.
 */
export class PlayerTrace {
  constructor() {
    /** @type {PlayerEntry[]} */
    this.entries = [];
    /** @type {{id: number, playing: boolean}[]} flushes not yet rendered */
    this.flushes = [];
    /** @type {WeakMap<Float32Array, number>} trace id per traced chunk */
    this.ids = new WeakMap();
  }

  /**
   * A chunk was queued.
   * @param {Float32Array} samples
   * @param {number | undefined} id
   */
  pushed(samples, id) {
    if (id !== undefined) this.ids.set(samples, id);
  }

  /**
   * A flush came while audio was `playing` (or not).
   * @param {number | undefined} id
   * @param {boolean} playing
   */
  flushed(id, playing) {
    if (id !== undefined) this.flushes.push({ id, playing });
  }

  /** @returns {{id: number, playing: boolean}[]} the flushes the coming quantum follows */
  beginQuantum() {
    const flushes = this.flushes;
    if (flushes.length) this.flushes = [];
    return flushes;
  }

  /**
   * `chunk`'s first sample is rendered at audio frame `frame`.
   * @param {Float32Array} chunk
   * @param {number} frame
   */
  chunkStarts(chunk, frame) {
    const id = this.ids.get(chunk);
    if (id !== undefined && this.entries.length < MAX_PLAYER_ENTRIES) this.entries.push([id, frame]);
  }

  /**
   * The quantum at `frame` rendered `written` model samples after `flushes`.
   * @param {{id: number, playing: boolean}[]} flushes
   * @param {number} frame
   * @param {number} written
   */
  endQuantum(flushes, frame, written) {
    for (const f of flushes) this.entries.push(["flush", f.id, frame, written, f.playing]);
  }

  /** @returns {PlayerEntry[]} the entries so far, taken out */
  take() {
    const entries = this.entries;
    this.entries = [];
    return entries;
  }
}

/**
 * Register one controller's seam on `globalThis.__screenshareWidget` (created on first use).
 * @param {object} seam
 * @returns {() => void} unregisters it
 */
export function registerSeam(seam) {
  const g = /** @type {any} */ (globalThis);
  g.__screenshareWidget ??= { controllers: [] };
  g.__screenshareWidget.controllers.push(seam);
  return () => {
    const list = g.__screenshareWidget.controllers;
    const i = list.indexOf(seam);
    if (i >= 0) list.splice(i, 1);
  };
}
