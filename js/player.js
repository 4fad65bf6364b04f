// @ts-check
/**
 * Playback of the model's voice: the 24 kHz AudioContext, the player worklet, the gain after
 * it (the volume and mute), the playback generation (audio from before the latest
 * `interrupted` is stale), and the player's statistics. Internal module.
 */

import { loadWorklet } from "./capture.js";
import { isWhole } from "./protocol.js";
import { OUTPUT_RATE_HZ, pcm16ToFloat } from "./pcm.js";
import { PLAYER_PROCESSOR } from "./worklets/names.js";
import PLAYER_WORKLET_SOURCE from "./worklets/player.worklet.js?source";
import { GAIN_TIME_CONSTANT_S } from "./volume.js";
import { ECHO_TAIL_MS } from "./echo-gate.js";

export { PLAYER_WORKLET_SOURCE };

/** @typedef {import("./trace.js").LatencyTrace} LatencyTrace */

/** Audio the player buffers before it starts a turn or resumes after running dry (ms). */
const PREROLL_MS = 100;
/** Most model audio the player holds (ms); past it the oldest chunks are dropped and counted. */
const MAX_QUEUE_MS = 60_000;
/** How often the page reports player statistics to the kernel while audio plays (ms). */
const PLAYBACK_REPORT_MS = 1_000;
/** How long a `trace` request waits for the player's answer (ms). */
const TRACE_WAIT_MS = 1_000;
/** How long a `stats()` call waits for the player's answer before it takes the last (ms). */
export const STATS_WAIT_MS = 1_000;

/**
 * Player statistics, in samples at 24 kHz.
 * @typedef {object} PlayerStats
 * @property {number} played samples output from the queue
 * @property {number} queued samples waiting
 * @property {number} underruns times the queue ran dry before the turn completed
 * @property {number} dropped chunks dropped because the queue was full
 * @property {number} stale chunks dropped because their generation was old
 * @property {number} generation current playback generation
 * @property {number} flushedAt audio frame at which the last flush took effect, -1 if none
 */

/**
 * @param {number} generation
 * @returns {PlayerStats}
 */
export function emptyStats(generation) {
  return { played: 0, queued: 0, underruns: 0, dropped: 0, stale: 0, generation, flushedAt: -1 };
}

/** The model's voice for one widget model; its context and node exist while it captures. */
export class Player {
  /** @param {(stats: PlayerStats) => void} onReport the worklet's periodic report */
  constructor(onReport) {
    this.onReport = onReport;
    /** @type {AudioContext | null} 24 kHz context for the model's voice */
    this.context = null;
    /** @type {AudioWorkletNode | null} the player worklet */
    this.node = null;
    /** @type {GainNode | null} between the worklet and the speakers */
    this.gainNode = null;
    /** The gain the model's voice plays at (0..1); kept for the next context. */
    this.gain = 1;
    this.generation = 0;
    this.staleDropped = 0; // stale model chunks dropped on the main thread
    /** @type {Map<number, (stats: PlayerStats) => void>} */
    this.statsWaiters = new Map();
    this.requestId = 0;
    /** @type {Map<number, (entries: any[][]) => void>} */
    this.traceWaiters = new Map();
    /** @type {(entries: any[][]) => void} where entries of a timed-out trace request go */
    this.onOrphans = () => {};
    /** @type {PlayerStats} */
    this.lastStats = emptyStats(0);
    /** When the audio pushed so far will have played (performance.now() ms, before the
     * output's latency); an estimate, for the echo gate. */
    this.audibleUntil = -Infinity;
    /** @type {import("./capture.js").Realm} where the voice plays */
    this.realm = window;
  }

  /**
   * Create the playback context; must run inside the Share click (autoplay rules).
   * @returns {Promise<void>} its resume
   */
  open() {
    this.context = new this.realm.AudioContext({ sampleRate: OUTPUT_RATE_HZ });
    return this.context.resume();
  }

  /** Load the player worklet into the context. */
  load() {
    const context = /** @type {AudioContext} */ (this.context);
    return loadWorklet(context, PLAYER_WORKLET_SOURCE, this.realm);
  }

  /** Create the player node and connect it, through the gain, to the speakers. */
  attach() {
    const context = /** @type {AudioContext} */ (this.context);
    this.node = new this.realm.AudioWorkletNode(context, PLAYER_PROCESSOR, {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: {
        prerollSamples: (OUTPUT_RATE_HZ * PREROLL_MS) / 1000,
        maxQueuedSamples: (OUTPUT_RATE_HZ * MAX_QUEUE_MS) / 1000,
        reportEverySamples: (OUTPUT_RATE_HZ * PLAYBACK_REPORT_MS) / 1000,
        generation: this.generation,
      },
    });
    this.node.port.onmessage = (event) => this.onMessage(event.data);
    // Starts at the gain in force: nothing has played in this context yet.
    this.gainNode = new this.realm.GainNode(context, { gain: this.gain });
    this.node.connect(this.gainNode).connect(context.destination);
  }

  /**
   * Play the model's voice at `gain` (0..1) from now on: a ramp (time constant
   * GAIN_TIME_CONSTANT_S) when it plays, else at the next `attach`.
   * @param {number} gain
   */
  setGain(gain) {
    this.gain = gain;
    const context = this.context;
    if (!this.gainNode || !context) return;
    this.gainNode.gain.setTargetAtTime(gain, context.currentTime, GAIN_TIME_CONSTANT_S);
  }

  /** @param {unknown} gen a generation from the kernel, or the current one */
  genOf(gen) {
    return isWhole(gen) ? gen : this.generation;
  }

  /**
   * Model audio arrived.
   * @param {unknown} rawGen
   * @param {DataView | undefined} view PCM16 at 24 kHz
   * @param {LatencyTrace | null} trace names the chunk when a benchmark traces
   */
  play(rawGen, view, trace) {
    const gen = this.genOf(rawGen);
    if (gen < this.generation) {
      this.staleDropped++;
      return;
    }
    this.generation = gen;
    if (!view || !this.node) return; // not capturing: nobody is listening
    const samples = pcm16ToFloat(view);
    const start = Math.max(this.audibleUntil, performance.now());
    this.audibleUntil = start + samples.length / (OUTPUT_RATE_HZ / 1000);
    const id = trace?.modelChunk(view);
    this.node.port.postMessage({ cmd: "push", gen, samples, trace: id }, [samples.buffer]);
  }

  /**
   * The model was interrupted: flush, and older audio is stale from now on.
   * @param {unknown} rawGen the new generation
   * @param {LatencyTrace | null} trace names the flush when a benchmark traces
   */
  interrupt(rawGen, trace) {
    this.generation = this.genOf(rawGen);
    this.audibleUntil = Math.min(this.audibleUntil, performance.now());
    const context = this.context;
    const id = trace && this.node && context ? trace.interrupt(context) : undefined;
    this.node?.port.postMessage({ cmd: "flush", gen: this.generation, trace: id });
  }

  /**
   * Whether the model's voice may be in the room at `now`: audio is queued or playing, or
   * played less than the output's latency, the pre-roll and ECHO_TAIL_MS ago; never when muted.
   * @param {number} now performance.now() (ms)
   */
  audible(now) {
    const context = this.context;
    if (!context || this.gain === 0) return false;
    const outputS = (context.baseLatency || 0) + (/** @type {any} */ (context).outputLatency || 0);
    return now < this.audibleUntil + outputS * 1000 + PREROLL_MS + ECHO_TAIL_MS;
  }

  /** @param {unknown} rawGen the turn of that generation is complete */
  endTurn(rawGen) {
    this.node?.port.postMessage({ cmd: "end", gen: this.genOf(rawGen) });
  }

  /** @param {unknown} gen a snapshot's generation: only ever moves forward */
  catchUp(gen) {
    if (isWhole(gen) && gen > this.generation) {
      this.generation = gen;
      this.node?.port.postMessage({ cmd: "generation", gen });
    }
  }

  /** @param {{cmd: string, id?: number, stats: PlayerStats, entries?: any[][]}} data */
  onMessage(data) {
    if (data.cmd === "trace") {
      const waiter = data.id === undefined ? undefined : this.traceWaiters.get(data.id);
      if (waiter) waiter(data.entries ?? []);
      else this.onOrphans(data.entries ?? []); // its request had timed out
      if (data.id !== undefined) this.traceWaiters.delete(data.id);
      return;
    }
    const stats = { ...data.stats, stale: data.stats.stale + this.staleDropped };
    this.lastStats = stats;
    if (data.cmd === "stats" && data.id !== undefined) {
      this.statsWaiters.get(data.id)?.(stats);
      this.statsWaiters.delete(data.id);
    } else if (data.cmd === "report") {
      this.onReport(stats);
    }
  }

  /**
   * The player's statistics now; the last it reported when it does not answer within
   * STATS_WAIT_MS (a suspended context or a stalled audio thread), or when it closes first.
   * @returns {Promise<PlayerStats>}
   */
  stats() {
    const node = this.node;
    if (!node || this.context?.state === "closed") return Promise.resolve(this.last());
    const id = ++this.requestId;
    return new Promise((resolve) => {
      this.statsWaiters.set(id, resolve);
      node.port.postMessage({ cmd: "stats", id });
      setTimeout(() => {
        if (this.statsWaiters.delete(id)) resolve(this.last());
      }, STATS_WAIT_MS);
    });
  }

  /** @returns {PlayerStats} the last statistics reported, at the current generation */
  last() {
    return { ...this.lastStats, generation: this.generation };
  }

  /** @returns {Promise<any[][]>} the player's trace entries, [] if it does not answer in time */
  traceEntries() {
    const node = this.node;
    const context = this.context;
    if (!node || !context || context.state === "closed") return Promise.resolve([]);
    const id = ++this.requestId;
    return new Promise((resolve) => {
      this.traceWaiters.set(id, resolve);
      node.port.postMessage({ cmd: "trace", id });
      setTimeout(() => {
        this.traceWaiters.delete(id);
        resolve([]); // a suspended or closing context answers nothing
      }, TRACE_WAIT_MS);
    });
  }

  /** Disconnect and close the context; waiting `stats()` calls get the last statistics. */
  close() {
    this.node?.disconnect();
    this.gainNode?.disconnect();
    if (this.context && this.context.state !== "closed") this.context.close().catch(() => {});
    for (const resolve of this.statsWaiters.values()) resolve(this.lastStats);
    this.statsWaiters.clear();
    this.node = null;
    this.gainNode = null;
    this.context = null;
    this.audibleUntil = -Infinity; // nothing pushed: never audible
  }
}
