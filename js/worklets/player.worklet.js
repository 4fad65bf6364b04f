// @ts-check
/**
 * The model-audio player processor (AudioWorkletGlobalScope): a bounded queue of Float32
 * chunks with a pre-roll, underrun counting, a generation counter (stale chunks are dropped),
 * and a flush that takes effect in the very next render quantum.
 *
 * Messages in: push {gen, samples, trace?}, end {gen}, flush {gen, trace?}, generation {gen},
 * stats {id}, trace {id}. Out: stats {id, stats}, trace {id, entries}, and "report" {stats}
 * every `reportEverySamples` while audio plays.
 *
 * Built to a string by js/build.mjs and loaded from a Blob URL. Options: {prerollSamples,
 * maxQueuedSamples, reportEverySamples, generation}. Internal module.
 */

import { PlayerTrace } from "../trace.js";
import { PLAYER_PROCESSOR } from "./names.js";

class SswPlayer extends AudioWorkletProcessor {
  /** @param {AudioWorkletNodeOptions} options */
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.prerollSamples = o.prerollSamples;
    this.maxQueuedSamples = o.maxQueuedSamples;
    this.reportEvery = o.reportEverySamples;
    /** @type {Float32Array[]} the first is read from `head` */
    this.queue = [];
    this.head = 0;
    this.queued = 0;
    /** @type {number} */
    this.generation = o.generation;
    this.playing = false; // false while pre-rolling
    this.turnOpen = false; // audio arrived and the turn has not completed
    this.played = 0;
    this.underruns = 0;
    this.dropped = 0;
    this.stale = 0;
    this.flushedAt = -1;
    this.nextReport = 0;
    this.reportedPlayed = 0;
    this.trace = new PlayerTrace(); // only chunks and flushes sent with a trace id
    this.port.onmessage = (event) => this.handle(event.data);
  }

  /** @param {any} m */
  handle(m) {
    switch (m.cmd) {
      case "push":
        return this.push(m.gen, m.samples, m.trace);
      case "end":
        if (m.gen >= this.generation) {
          this.generation = m.gen;
          this.turnOpen = false;
        }
        return;
      case "flush":
        return this.flush(m.gen, m.trace);
      case "generation":
        if (m.gen > this.generation) this.generation = m.gen;
        return;
      case "stats":
        return this.port.postMessage({ cmd: "stats", id: m.id, stats: this.stats() });
      case "trace":
        return this.port.postMessage({ cmd: "trace", id: m.id, entries: this.trace.take() });
    }
  }

  /**
   * @param {number} gen
   * @param {Float32Array} samples
   * @param {number | undefined} trace
   */
  push(gen, samples, trace) {
    if (gen < this.generation) {
      this.stale++;
      return;
    }
    this.generation = gen;
    this.trace.pushed(samples, trace);
    this.queue.push(samples);
    this.queued += samples.length;
    this.turnOpen = true;
    while (this.queued > this.maxQueuedSamples && this.queue.length > 1) {
      this.queued -= /** @type {Float32Array} */ (this.queue.shift()).length - this.head;
      this.head = 0;
      this.dropped++;
    }
  }

  /**
   * @param {number} gen
   * @param {number | undefined} trace
   */
  flush(gen, trace) {
    this.trace.flushed(trace, this.playing && this.queued > 0);
    this.generation = gen;
    this.queue = [];
    this.head = 0;
    this.queued = 0;
    this.playing = false;
    this.turnOpen = false;
    this.flushedAt = currentFrame;
  }

  stats() {
    return {
      played: this.played, queued: this.queued, underruns: this.underruns,
      dropped: this.dropped, stale: this.stale, generation: this.generation,
      flushedAt: this.flushedAt,
    };
  }

  /**
   * @param {Float32Array[][]} _inputs
   * @param {Float32Array[][]} outputs
   */
  process(_inputs, outputs) {
    const out = outputs[0][0];
    const flushes = this.trace.beginQuantum();
    if (!this.playing && this.queued > 0 &&
        (this.queued >= this.prerollSamples || !this.turnOpen)) {
      this.playing = true;
    }
    const written = this.playing ? this.render(out) : 0;
    out.fill(0, written);
    this.trace.endQuantum(flushes, currentFrame, written);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (currentFrame >= this.nextReport) {
      this.nextReport = currentFrame + this.reportEvery;
      if (this.played !== this.reportedPlayed || this.queued > 0) {
        this.reportedPlayed = this.played;
        this.port.postMessage({ cmd: "report", stats: this.stats() });
      }
    }
    return true;
  }

  /**
   * Copy queued audio into `out`.
   * @param {Float32Array} out
   * @returns {number} samples written
   */
  render(out) {
    const n = out.length;
    let written = 0;
    while (written < n && this.queue.length > 0) {
      const chunk = this.queue[0];
      if (this.head === 0) this.trace.chunkStarts(chunk, currentFrame + written);
      const take = Math.min(n - written, chunk.length - this.head);
      out.set(chunk.subarray(this.head, this.head + take), written);
      written += take;
      this.head += take;
      if (this.head === chunk.length) {
        this.queue.shift();
        this.head = 0;
      }
    }
    this.queued -= written;
    this.played += written;
    if (written < n) {
      // Ran dry: mid-turn that is an underrun; pre-roll again before resuming.
      this.playing = false;
      if (this.turnOpen) this.underruns++;
    }
    return written;
  }
}

registerProcessor(PLAYER_PROCESSOR, SswPlayer);
