// @ts-check
/**
 * The browser half of screenshare-widget: one click shares the screen and the microphone with
 * the kernel, which relays them to Gemini Live and sends the model's voice back to play here.
 *
 * Loaded by anywidget from a blob: URL, so this file is one self-contained module: the two
 * AudioWorklet processors are inlined as strings and loaded through their own Blob URLs.
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
 *   - `captureContext`, `playbackContext` (AudioContext | null), `playerNode` (AudioWorkletNode);
 *   - `tracks()`: the current (or last) capture's MediaStreamTracks, ended ones included;
 *   - `stats()`: Promise of {played, queued, underruns, dropped, stale, generation, flushedAt},
 *     counts in 24 kHz samples (flushedAt: the audio frame of the last flush, -1 if none);
 *   - `sent`: {audio, frames, lastFrame: {width, height, bytes}} counted since the page loaded;
 *   - `startTrace()` and `takeTrace()`: the latency trace the benchmarks read (see LatencyTrace).
 */

// ---- wire protocol ---------------------------------------------------------------------------
// Kinds kept in sync with screenshare_widget/protocol.py (tests/test_protocol_sync.py compares).

/** Kinds the browser sends to the kernel. */
export const BROWSER_KINDS = Object.freeze([
  "hello",
  "start",
  "audio",
  "frame",
  "stop",
  "client_error",
  "playback",
  "text",
  "confirm",
  "frame_stats",
  "beat",
]);
/** Kinds the kernel sends to the browser. */
export const KERNEL_KINDS = Object.freeze([
  "audio",
  "interrupted",
  "turn_complete",
  "turn",
  "snapshot",
  "stop",
  "ack",
  "notice",
  "tool",
  "frame_sent",
  "capture",
]);

// ---- media formats and limits ----------------------------------------------------------------

/** Microphone PCM16 sent to the kernel (Hz). */
const INPUT_RATE_HZ = 16_000;
/** Model PCM16 received from the kernel (Hz). */
const OUTPUT_RATE_HZ = 24_000;
/**
 * Default duration of one microphone chunk (ms; the `audio_chunk_ms` trait): 1600 samples =
 * 3200 bytes at 16 kHz. Each chunk is a Jupyter message the kernel handles, so chunk size sets
 * much of its CPU: 100 ms (the top of the 50-100 ms Live guides advise) costs the kernel about
 * half of what 40 ms does (the session benchmark compares them). The price: a chunk's first
 * sample waits up to that long to leave, and voice is judged per chunk.
 */
const CHUNK_MS = 100;
/** Accepted `audio_chunk_ms` values (ms), as the kernel validates them. */
const MIN_CHUNK_MS = 20;
const MAX_CHUNK_MS = 250;
/** Anti-alias low-pass applied before decimating the mic to 16 kHz (Hz). */
const LOWPASS_CUTOFF_HZ = 7_000;
/** Transition band of that filter (Hz); sets the number of FIR taps. */
const LOWPASS_TRANSITION_HZ = 2_000;
/** Audio the player buffers before it starts a turn or resumes after running dry (ms). */
const PREROLL_MS = 100;
/** Most model audio the player holds (ms); past it the oldest chunks are dropped and counted. */
const MAX_QUEUE_MS = 60_000;
/** How often the page reports player statistics to the kernel while audio plays (ms). */
const PLAYBACK_REPORT_MS = 1_000;
/** Screen frames per second never exceed this, whatever `max_fps` says. */
const MAX_FPS = 1;
/** Defaults for the frame traits when the model does not set them. */
const DEFAULT_MAX_SIZE_PX = 1024;
const DEFAULT_JPEG_QUALITY = 0.7;
/** Retry delay while the shared video has no dimensions yet (ms). */
const FRAME_RETRY_MS = 100;
/** How often the frame policy looks at the screen (ms). */
const CHECK_MS = 250;
/** The change detector compares luma thumbnails of this size (px). */
export const THUMB_WIDTH = 64;
export const THUMB_HEIGHT = 36;
/** A thumbnail pixel whose luma moved by more than this (of 255) counts as changed. */
export const PIXEL_DELTA = 12;
/** Defaults of the frame policy traits: the changed fraction of the screen that sends a frame,
 * and the heartbeat (s) that sends one on a still screen. */
const DEFAULT_MIN_CHANGE = 0.01;
const DEFAULT_HEARTBEAT_S = 10;
/** Microphone level (0..1, as the meter shows it) that counts as speech, and the quiet before
 * it that makes it the start of an utterance (ms). */
const SPEECH_LEVEL = 0.4;
const SPEECH_GAP_MS = 700;
/** How often the page reports the frame policy's counters to the kernel (ms). */
const FRAME_STATS_MS = 2_000;
/** Frames the filmstrip shows (the latest the model got). */
const FILMSTRIP_FRAMES = 8;
/** Unacknowledged microphone audio that means the kernel is busy (ms of audio). */
const ACK_LAG_MS = 1_500;
/** Silence from the kernel, while live, that means the kernel is busy (ms). */
const ACK_SILENCE_MS = 2_000;
/** How often the busy check runs while streaming (ms). */
const BUSY_CHECK_MS = 250;
/** How long a transient notice stays visible (ms). */
const NOTICE_MS = 5_000;
/** Microphone level shown as an empty meter (dBFS); 0 dBFS fills it. */
const METER_FLOOR_DB = -60;

const BUSY_NOTICE =
  "Paused: the kernel is busy running a cell; the conversation resumes when it finishes.";
const SCREEN_ENDED_NOTICE =
  "Screen sharing ended; the voice conversation continues. Click Stop to end it.";
const EMPTY_TRANSCRIPT =
  "Click Share, then talk: the assistant sees your screen and answers aloud.";
const USER_STOP_REASON = "Stopped by the user.";
const ALL_ENDED_REASON = "Every shared track ended.";
const MIC_ENDED_NOTICE =
  "The microphone stopped; the assistant still sees your screen. Click Stop to end it.";

// ---- lifecycle: capture belongs to a visible view, the session to a live page ----------------

/** How often the page tells the kernel it is there (ms) while a session runs or it shares,
 * muted or not; kept in sync with BEAT_INTERVAL_S in screenshare_widget/protocol.py. The
 * kernel ends a session whose page went silent (see screenshare_widget/liveness.py). */
const BEAT_MS = 2_000;
/** With no view of the model left in the page, capture stops after this long unless a view
 * comes back (ms): a re-render keeps the session; a closed tab or a cleared output ends the
 * sharing within a second. */
const VIEWLESS_GRACE_MS = 400;
/** Sends in a row that throw before the page counts its kernel connection as gone. */
const MAX_SEND_FAILURES = 3;
/** Kernel statuses (JupyterLab's kernel connection) after which this model's comm is dead. */
const KERNEL_GONE_STATUSES = ["restarting", "autorestarting", "dead"];
const NO_VIEW_REASON = "No view of the assistant is left in the page, so sharing stopped.";
const KERNEL_RESTARTED = "The kernel restarted: run the cell again.";
const KERNEL_DIED = "The kernel stopped: start it again and run the cell.";
const KERNEL_LOST =
  "The kernel is gone (shut down, restarted or disconnected): start it if it is not running, " +
  "and run the cell again.";
const MOVED_REASON = "Sharing moved to another view of this assistant.";
const PAGE_CLOSED_REASON = "The page was closed, so sharing stopped.";
const NOT_SHARED_NOTICE =
  "A session is running, but this page shares nothing: click Share to send your screen and " +
  "voice from here, or Stop to end the session.";
/** After this page ends its capture, the kernel's status may still say live this long (ms). */
const STOP_SETTLE_MS = 3_000;

/**
 * Call `tick` every BEAT_MS until the returned function is called. A worker's timer keeps time
 * in a background tab, where Chrome wakes a page's own timers once a minute after five hidden
 * minutes; where workers are refused (a strict CSP), the page's timer does it.
 * @param {() => void} tick
 * @returns {() => void} stops the beat
 */
function startBeat(tick) {
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let timer;
  /** @type {Worker | null} */
  let worker = null;
  let stopped = false;
  let url = "";
  const release = () => {
    worker?.terminate();
    worker = null;
    if (url) URL.revokeObjectURL(url);
    url = "";
  };
  const fallback = () => {
    release();
    if (!stopped) timer ??= setInterval(tick, BEAT_MS);
  };
  try {
    const source = `setInterval(() => postMessage(0), ${BEAT_MS});`;
    url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    worker = new Worker(url);
    worker.onmessage = tick;
    worker.onerror = fallback;
  } catch {
    fallback();
  }
  return () => {
    stopped = true;
    release();
    clearInterval(timer);
  };
}

/**
 * The token meter's text: "12,345 tokens · ≈$0.0123 · last turn 3,210 · next 10 min ≈ 96k
 * ($0.10)": the total, the cost when known, the budget when set, the last turn's tokens
 * (each turn re-bills the whole context) and the projection of the next 10 minutes at the
 * recent turn rate (PROJECTION_S in pricing.py; a floor, since the context grows).
 * @param {object} spend
 * @param {number} spend.tokens
 * @param {number} spend.costUsd -1 (or NaN) when unknown
 * @param {number} spend.budgetTokens 0: none
 * @param {number} spend.budgetUsd 0: none
 * @param {number} [spend.lastTurnTokens] 0: no turn yet
 * @param {number} [spend.projectedTokens] -1 (or NaN) when unknown
 * @param {number} [spend.projectedUsd] -1 (or NaN) when unknown
 */
export function formatSpend({
  tokens, costUsd, budgetTokens, budgetUsd,
  lastTurnTokens = 0, projectedTokens = -1, projectedUsd = -1,
}) {
  if (!(tokens > 0) && !(budgetTokens > 0) && !(budgetUsd > 0)) return "";
  /** @param {number} n */
  const whole = (n) => Math.round(n).toLocaleString("en-US");
  /** @param {number} usd */
  const dollars = (usd) => `$${usd < 1 ? usd.toFixed(4) : usd.toFixed(2)}`;
  /** 950, 9.6k, 96k, 1.2M, 12M: one decimal below 10 of a unit, none above.
   * @param {number} n */
  const compact = (n) => {
    const [unit, size] = n >= 999_500 ? ["M", 1e6] : n >= 999.5 ? ["k", 1e3] : ["", 1];
    const x = n / size;
    return `${x < 9.95 && size > 1 ? x.toFixed(1).replace(/\.0$/, "") : Math.round(x)}${unit}`;
  };
  let text = `${whole(tokens)} tokens`;
  if (budgetTokens > 0) text += ` of ${whole(budgetTokens)}`;
  if (costUsd >= 0) {
    text += ` · ≈${dollars(costUsd)}`;
    if (budgetUsd > 0) text += ` of $${budgetUsd.toFixed(2)}`;
  }
  if (lastTurnTokens > 0) text += ` · last turn ${whole(lastTurnTokens)}`;
  if (projectedTokens >= 0) {
    text += ` · next 10 min ≈ ${compact(projectedTokens)}`;
    if (projectedUsd >= 0) text += ` (${dollars(projectedUsd)})`;
  }
  return text;
}

/**
 * Luma (Rec. 601, 0-255) of RGBA pixels.
 * @param {Uint8ClampedArray | Uint8Array} rgba
 * @returns {Uint8Array}
 */
export function luma(rgba) {
  const out = new Uint8Array(rgba.length >> 2);
  for (let i = 0, j = 0; j < out.length; i += 4, j++) {
    out[j] = (77 * rgba[i] + 150 * rgba[i + 1] + 29 * rgba[i + 2]) >> 8;
  }
  return out;
}

/**
 * The fraction (0..1) of pixels whose luma differs by more than PIXEL_DELTA; 1 when the two
 * cannot be compared (none yet, or another size).
 * @param {Uint8Array | null} a
 * @param {Uint8Array | null} b
 */
export function changedFraction(a, b) {
  if (!a || !b || a.length !== b.length || a.length === 0) return 1;
  let changed = 0;
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) > PIXEL_DELTA) changed++;
  return changed / a.length;
}

/**
 * When a screen frame goes to the model: when the screen changed beyond `minChange` since the
 * last frame sent; when the user starts to speak and anything at all changed since (say, a
 * word typed); and as a heartbeat on a still screen. Never sooner than `intervalMs` after the
 * last one, and never while paused. A change that comes within the interval is sent when it
 * ends (the comparison is with the last frame *sent*).
 */
export class FramePolicy {
  constructor() {
    this.lastSentAt = -Infinity;
    /** @type {Uint8Array | null} */
    this.lastThumb = null;
    this.speechPending = false;
    this.counts = { checked: 0, sent: 0, skipped: 0, first: 0, change: 0, speech: 0, heartbeat: 0 };
  }

  /**
   * @param {number} now ms
   * @param {Uint8Array} thumb luma thumbnail of the screen now
   * @param {{minChange: number, heartbeatMs: number, intervalMs: number, paused: boolean}} o
   * @returns {"first" | "change" | "speech" | "heartbeat" | null} why to send now, or null
   */
  decide(now, thumb, { minChange, heartbeatMs, intervalMs, paused }) {
    this.counts.checked++;
    /** @type {"first" | "change" | "speech" | "heartbeat" | null} */
    let reason = null;
    if (!paused && now - this.lastSentAt >= intervalMs) {
      const changed = changedFraction(thumb, this.lastThumb);
      if (!this.lastThumb) reason = "first";
      else if (changed >= minChange) reason = "change";
      else if (this.speechPending && changed > 0) reason = "speech";
      else if (now - this.lastSentAt >= heartbeatMs) reason = "heartbeat";
      // The user speaks about a screen the model already has: nothing to send for that.
      if (this.speechPending && changed === 0) this.speechPending = false;
    }
    if (!reason) this.counts.skipped++;
    return reason;
  }

  /**
   * A frame went out.
   * @param {number} now
   * @param {Uint8Array} thumb
   * @param {"first" | "change" | "speech" | "heartbeat"} reason
   */
  sent(now, thumb, reason) {
    this.lastSentAt = now;
    this.lastThumb = thumb;
    this.speechPending = false;
    this.counts.sent++;
    this.counts[reason]++;
  }

  /** The user started to speak: the next check sends a frame (within the interval). */
  speechStarted() {
    this.speechPending = true;
  }
}

/**
 * What to ask getDisplayMedia for. No system audio (the model would hear itself). The notebook's
 * own tab is offered too ("what is wrong with this cell?"), and Chrome may let the user switch
 * the shared tab while sharing. Browsers ignore the hints they do not know.
 * @type {DisplayMediaStreamOptions}
 */
const DISPLAY_OPTIONS = /** @type {any} */ ({
  video: { frameRate: { ideal: 5, max: 15 } },
  audio: false,
  selfBrowserSurface: "include",
  surfaceSwitching: "include",
});

/** Microphone processing wanted from the browser (echo cancellation matters: we play audio). */
const MIC_CONSTRAINTS = {
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
  channelCount: 1,
};

// ---- types -----------------------------------------------------------------------------------

/** @typedef {"idle"|"connecting"|"live"|"reconnecting"|"closing"|"error"} Status */

/**
 * Traits synced from the Python widget (kept in sync with screenshare_widget/widget.py).
 * @typedef {object} Model
 * @property {Status} status
 * @property {string} error human sentence, "" if none
 * @property {string} backend e.g. "Gemini API" or "Local Live emulator: no API key is set"
 * @property {boolean} emulated
 * @property {string} model
 * @property {string} voice
 * @property {number} max_fps frames per second, clamped to at most 1
 * @property {number} max_size long side of a frame (px)
 * @property {number} jpeg_quality 0..1
 * @property {number} live_since epoch seconds the session went live, 0 when not live
 * @property {string} connection how the last handover went: "", "resumed" or "fresh session"
 * @property {number} others_live other assistants of the same kernel with a session running
 * @property {number} tokens tokens reported so far (the meter)
 * @property {number} cost_usd estimated cost so far (USD), -1 without prices
 * @property {number} budget_tokens 0: none
 * @property {number} budget_usd 0: none
 * @property {number} last_turn_tokens the last usage report's tokens
 * @property {number} projected_10min_tokens next 10 min at the recent turn rate, -1 unknown
 * @property {number} projected_10min_usd the same in USD, -1 unknown
 */

/**
 * The part of anywidget's model proxy this module uses.
 * @typedef {object} WidgetModel
 * @property {<K extends keyof Model>(key: K) => Model[K]} get
 * @property {(name: string, callback: (...args: any[]) => void) => void} on
 * @property {(name?: string | null, callback?: ((...args: any[]) => void) | null) => void} off
 * @property {(content: object, callbacks?: unknown, buffers?: ArrayBuffer[]) => void} send
 */

/**
 * A transcript turn as the kernel sends it (times in epoch seconds).
 * @typedef {object} Turn
 * @property {string} role "user" or "model"
 * @property {string} text
 * @property {number} started_at
 * @property {number | null} ended_at
 * @property {boolean} interrupted
 * @property {number} [instruction] the system instruction version it was spoken under
 * @property {boolean} [typed] typed text rather than speech
 */

/**
 * A tool call as the kernel sends it.
 * @typedef {object} ToolCall
 * @property {string} name
 * @property {string} args JSON of the arguments (shortened)
 * @property {string} outcome "running", "ok", "error" or "cancelled"
 * @property {string} result JSON of the result (shortened)
 * @property {string} error
 * @property {number | null} duration_ms
 * @property {string} [id]
 * @property {boolean} [confirm] the call waits for (or waited for) an Allow click
 */

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

// ---- pure helpers (exported for tests) -------------------------------------------------------

/**
 * Scale `width` x `height` so the long side is at most `maxSide`, keeping the aspect ratio.
 * Never upscales. Returns 0 x 0 for a source without dimensions.
 * @param {number} width
 * @param {number} height
 * @param {number} maxSide
 * @returns {{width: number, height: number}}
 */
export function fitSize(width, height, maxSide) {
  if (!(width > 0 && height > 0)) return { width: 0, height: 0 };
  const scale = Math.min(1, maxSide / Math.max(width, height));
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  };
}

/**
 * One float sample to PCM16: clamped to [-1, 1] first, NaN becomes 0.
 * Also runs inside the capture worklet (its source is inlined there).
 * @param {number} x
 * @returns {number}
 */
export function sampleToPcm16(x) {
  const c = x > 1 ? 1 : x < -1 ? -1 : x;
  return c < 0 ? Math.round(c * 0x8000) : Math.round(c * 0x7fff) || 0;
}

/**
 * @param {Float32Array} samples
 * @returns {Int16Array}
 */
export function floatToPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = sampleToPcm16(samples[i]);
  return out;
}

/**
 * PCM16 little-endian bytes to floats in [-1, 1). Honours `byteOffset` and `byteLength`; an
 * odd offset (not Int16-aligned) is copied first, and a trailing odd byte is ignored.
 * Browsers run on little-endian hosts, so an aligned Int16Array view reads LE directly.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {Float32Array}
 */
export function pcm16ToFloat(data) {
  const view = data instanceof ArrayBuffer ? new DataView(data) : data;
  const count = view.byteLength >> 1;
  const pcm =
    view.byteOffset % 2 === 0
      ? new Int16Array(view.buffer, view.byteOffset, count)
      : new Int16Array(view.buffer.slice(view.byteOffset, view.byteOffset + count * 2));
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = pcm[i] / 0x8000;
  return out;
}

/**
 * A 32-bit fingerprint of PCM16 audio that names a chunk on both ends of a latency trace (the
 * benchmarks compute the same one in Python): the byte length plus, over the samples s_i read
 * as unsigned 16-bit, the sum of s_i * ((i + 1) * 2654435761 mod 2^32), all mod 2^32.
 * @param {Uint8Array} bytes little-endian PCM16
 * @returns {number} an unsigned 32-bit integer
 */
export function pcmHash(bytes) {
  let h = bytes.length >>> 0;
  for (let i = 0, k = 1; i + 1 < bytes.length; i += 2, k++) {
    const sample = bytes[i] | (bytes[i + 1] << 8);
    h = (h + (Math.imul(sample, Math.imul(k, 2654435761) >>> 0) >>> 0)) >>> 0;
  }
  return h;
}

/**
 * The bytes of `data` as an ArrayBuffer holding exactly them. JupyterLab's websocket
 * serializer sends a view's whole underlying buffer, so `model.send` must only get these.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {ArrayBuffer}
 */
export function exactBuffer(data) {
  if (data instanceof ArrayBuffer) return data;
  const { buffer, byteOffset, byteLength } = data;
  if (buffer instanceof ArrayBuffer && byteOffset === 0 && byteLength === buffer.byteLength) {
    return buffer;
  }
  return /** @type {ArrayBuffer} */ (buffer.slice(byteOffset, byteOffset + byteLength));
}

/**
 * Windowed-sinc (Blackman) low-pass FIR with unity gain at DC.
 * @param {number} cutoffHz -6 dB point
 * @param {number} sampleRate Hz
 * @param {number} numTaps odd, so the filter has a whole-sample delay
 * @returns {Float32Array}
 */
export function designLowpass(cutoffHz, sampleRate, numTaps) {
  const taps = new Float32Array(numTaps);
  const fc = cutoffHz / sampleRate; // cycles per sample
  const mid = (numTaps - 1) / 2;
  let sum = 0;
  for (let n = 0; n < numTaps; n++) {
    const k = n - mid;
    const sinc = k === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * k) / (Math.PI * k);
    const phase = (2 * Math.PI * n) / (numTaps - 1);
    const blackman = 0.42 - 0.5 * Math.cos(phase) + 0.08 * Math.cos(2 * phase);
    taps[n] = sinc * blackman;
    sum += taps[n];
  }
  for (let n = 0; n < numTaps; n++) taps[n] /= sum;
  return taps;
}

/**
 * The anti-alias filter for decimating `sampleRate` to 16 kHz, or null when the rate is
 * already 16 kHz or lower (nothing to remove).
 * @param {number} sampleRate Hz
 * @returns {Float32Array | null}
 */
export function resamplerTaps(sampleRate) {
  if (sampleRate <= INPUT_RATE_HZ) return null;
  // A Blackman window needs about 5.5 / N of the sample rate for its transition band.
  const count = Math.ceil((5.5 * sampleRate) / LOWPASS_TRANSITION_HZ) | 1;
  return designLowpass(LOWPASS_CUTOFF_HZ, sampleRate, count);
}

/**
 * An RMS amplitude as a meter position in 0..1 (logarithmic, METER_FLOOR_DB..0 dBFS).
 * @param {number} rms
 * @returns {number}
 */
export function rmsToLevel(rms) {
  if (!(rms > 0)) return 0;
  const db = 20 * Math.log10(rms);
  return Math.min(1, Math.max(0, (db - METER_FLOOR_DB) / -METER_FLOOR_DB));
}

/**
 * Elapsed seconds as "mm:ss", or "h:mm:ss" past an hour.
 * @param {number} seconds
 * @returns {string}
 */
export function formatElapsed(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const two = (/** @type {number} */ n) => String(n).padStart(2, "0");
  const hours = Math.floor(s / 3600);
  const rest = `${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return hours > 0 ? `${hours}:${rest}` : rest;
}

/** @returns {string} a random id for one capture (start to stop) */
export function newCaptureId() {
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// ---- audio worklets (inlined: the module itself has no usable base URL) ----------------------

export const CAPTURE_PROCESSOR = "ssw-capture-16k";
export const PLAYER_PROCESSOR = "pcm-player";

/**
 * Microphone at the device rate -> low-pass FIR -> fractional-position linear interpolation to
 * 16 kHz -> PCM16 chunks of CHUNK_SAMPLES, posted with their RMS (the ArrayBuffer is transferred).
 */
export const CAPTURE_WORKLET_SOURCE = `
${sampleToPcm16.toString()}
class SswCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.taps = o.taps; // Float32Array, or null to skip filtering
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
registerProcessor(${JSON.stringify(CAPTURE_PROCESSOR)}, SswCapture);
`;

/**
 * Model audio player: a bounded queue of Float32 chunks with a pre-roll, underrun counting,
 * a generation counter (stale chunks are dropped), and a flush that takes effect in the very
 * next render quantum. Messages: push {gen, samples}, end {gen}, flush {gen}, generation {gen},
 * stats {id}. It posts "report" every PLAYBACK_REPORT_MS while audio plays.
 */
export const PLAYER_WORKLET_SOURCE = `
class SswPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.prerollSamples = o.prerollSamples;
    this.maxQueuedSamples = o.maxQueuedSamples;
    this.reportEvery = o.reportEverySamples;
    this.queue = []; // Float32Array chunks; the first is read from 'head'
    this.head = 0;
    this.queued = 0;
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
    // Latency trace (only for chunks and flushes sent with a trace id): [id, frame] when a
    // chunk's first sample is rendered; ["flush", id, frame, samples, playing] for the first
    // quantum rendered after a flush.
    this.traced = [];
    this.flushTraces = [];
    this.port.onmessage = (event) => this.handle(event.data);
  }
  handle(m) {
    if (m.cmd === "push") {
      if (m.gen < this.generation) {
        this.stale++;
        return;
      }
      this.generation = m.gen;
      if (m.trace !== undefined) m.samples.trace = m.trace;
      this.queue.push(m.samples);
      this.queued += m.samples.length;
      this.turnOpen = true;
      while (this.queued > this.maxQueuedSamples && this.queue.length > 1) {
        this.queued -= this.queue.shift().length - this.head;
        this.head = 0;
        this.dropped++;
      }
    } else if (m.cmd === "end") {
      if (m.gen >= this.generation) {
        this.generation = m.gen;
        this.turnOpen = false;
      }
    } else if (m.cmd === "flush") {
      if (m.trace !== undefined) {
        this.flushTraces.push({ id: m.trace, playing: this.playing && this.queued > 0 });
      }
      this.generation = m.gen;
      this.queue = [];
      this.head = 0;
      this.queued = 0;
      this.playing = false;
      this.turnOpen = false;
      this.flushedAt = currentFrame;
    } else if (m.cmd === "generation") {
      if (m.gen > this.generation) this.generation = m.gen;
    } else if (m.cmd === "stats") {
      this.port.postMessage({ cmd: "stats", id: m.id, stats: this.stats() });
    } else if (m.cmd === "trace") {
      this.port.postMessage({ cmd: "trace", id: m.id, entries: this.traced });
      this.traced = [];
    }
  }
  stats() {
    return {
      played: this.played, queued: this.queued, underruns: this.underruns,
      dropped: this.dropped, stale: this.stale, generation: this.generation,
      flushedAt: this.flushedAt,
    };
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    const n = out.length;
    let written = 0;
    const flushTraces = this.flushTraces;
    if (flushTraces.length) this.flushTraces = [];
    if (!this.playing && this.queued > 0 &&
        (this.queued >= this.prerollSamples || !this.turnOpen)) {
      this.playing = true;
    }
    if (this.playing) {
      while (written < n && this.queue.length > 0) {
        const chunk = this.queue[0];
        if (this.head === 0 && chunk.trace !== undefined && this.traced.length < 100000) {
          this.traced.push([chunk.trace, currentFrame + written]);
        }
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
    }
    out.fill(0, written);
    for (const f of flushTraces) this.traced.push(["flush", f.id, currentFrame, written, f.playing]);
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
}
registerProcessor(${JSON.stringify(PLAYER_PROCESSOR)}, SswPlayer);
`;

/**
 * @param {BaseAudioContext} context
 * @param {string} source
 */
async function loadWorklet(context, source) {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    await context.audioWorklet.addModule(url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

// ---- browser support and errors --------------------------------------------------------------

/** @returns {string} why this page cannot share, or "" if it can */
function unsupportedReason() {
  if (!window.isSecureContext) {
    return "Screen sharing needs a secure page: open JupyterLab at http://localhost or over https.";
  }
  if (!navigator.mediaDevices?.getDisplayMedia || !navigator.mediaDevices.getUserMedia) {
    return (
      "This browser does not let the notebook share the screen or the microphone " +
      "(navigator.mediaDevices is missing); open the notebook in desktop Chrome, Edge or Firefox."
    );
  }
  if (typeof AudioContext === "undefined" || !("audioWorklet" in AudioContext.prototype)) {
    return (
      "This browser has no AudioWorklet, which the voice needs; " +
      "use a recent Chrome, Edge, Firefox or Safari."
    );
  }
  return "";
}

/**
 * A human sentence, with the fix, for a failed getDisplayMedia/getUserMedia/audio setup.
 * @param {"screen"|"microphone"|"audio"} what
 * @param {unknown} error
 */
function describeFailure(what, error) {
  const known = error instanceof Error || error instanceof DOMException;
  const name = known ? error.name : "";
  const detail = known ? error.message : String(error);
  const key = `${what}:${name}`;
  if (key in FAILURE_SENTENCES) return FAILURE_SENTENCES[key];
  const label = { screen: "Screen sharing", microphone: "The microphone", audio: "Audio" }[what];
  return `${label} failed (${name || "error"}: ${detail}); click Share to try again.`;
}

/** @type {Record<string, string>} "stage:DOMException name" -> what to tell the user */
const FAILURE_SENTENCES = {
  "screen:NotAllowedError":
    "Screen sharing was cancelled or blocked: click Share again and pick a screen, window or tab.",
  "screen:InvalidStateError": "Screen sharing must start from a click: click Share again.",
  "screen:NotReadableError":
    "The screen could not be captured: allow screen recording for the browser in the " +
    "system settings and click Share again.",
  "microphone:NotAllowedError":
    "Microphone access was denied: allow the microphone for this page (the icon in the " +
    "address bar) and click Share again.",
  "microphone:NotFoundError": "No microphone was found: connect one and click Share again.",
  "microphone:OverconstrainedError": "No microphone was found: connect one and click Share again.",
  "microphone:NotReadableError":
    "The microphone is in use by another application or could not start: close the other " +
    "application and click Share again.",
};

/** @param {MediaStream | null} stream */
function stopStream(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

// ---- per-model controller --------------------------------------------------------------------

/** @typedef {"idle"|"starting"|"live"} Phase page-side capture state */

/** Render quantum of the Web Audio API (frames). */
const RENDER_QUANTUM = 128;
/** A traced model chunk that has not played after this long was dropped or flushed (ms). */
const TRACE_GIVE_UP_MS = 10_000;

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
class LatencyTrace {
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
   * Resolve the player's entries against the playback clock and hand over what is final
   * (with `all`, every model chunk received, played or not).
   * @param {any[][]} entries from the player worklet
   * @param {AudioContext} context
   * @param {boolean} all
   */
  settle(entries, context, all) {
    const stamp = context.getOutputTimestamp();
    const rate = context.sampleRate;
    /** @param {number} frame */
    const toWall = (frame) =>
      performance.timeOrigin +
      (stamp.performanceTime ?? 0) +
      (frame / rate - (stamp.contextTime ?? 0)) * 1000;
    const pending = [...this.orphans, ...entries];
    this.orphans = [];
    for (const entry of pending) {
      if (entry[0] === "flush") {
        const [, id, frame, samples, playing] = entry;
        const asked = this.pendingInterrupts.get(id);
        if (!asked) continue;
        this.pendingInterrupts.delete(id);
        const quanta = (frame - asked[1]) / RENDER_QUANTUM;
        this.interrupts.push([asked[0], quanta, toWall(frame), samples, playing]);
      } else {
        const row = this.down.get(entry[0]);
        if (row) row[2] = toWall(entry[1]);
      }
    }
    const now = performance.timeOrigin + performance.now();
    const down = [];
    for (const [id, row] of this.down) {
      if (all || row[2] !== null || now - row[0] > TRACE_GIVE_UP_MS) {
        down.push(row);
        this.down.delete(id);
      }
    }
    const taken = { up: this.up, down, interrupts: this.interrupts };
    this.up = [];
    this.interrupts = [];
    return taken;
  }
}

/** A tiny topic emitter: `on` returns the function that unsubscribes. */
class Emitter {
  /** @type {Map<string, Set<(arg?: any) => void>>} */
  #topics = new Map();
  /**
   * @param {string} topic
   * @param {(arg?: any) => void} fn
   */
  on(topic, fn) {
    let set = this.#topics.get(topic);
    if (!set) this.#topics.set(topic, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }
  /**
   * @param {string} topic
   * @param {any} [arg]
   */
  emit(topic, arg) {
    for (const fn of [...(this.#topics.get(topic) ?? [])]) fn(arg);
  }
}

/**
 * Everything that exists once per widget model: capture, playback, the frame loop and the
 * transcript. Views subscribe to "state", "level", "turns" and "tools".
 */
class Controller extends Emitter {
  /** @param {WidgetModel} model */
  constructor(model) {
    super();
    this.model = model;
    /** @type {Phase} */
    this.phase = "idle";
    /** @type {Turn[]} */
    this.turns = [];
    /** @type {ToolCall[]} */
    this.tools = [];
    this.pageError = "";
    this.notice = "";
    this.busy = false;
    this.level = 0;
    /** @type {MediaStream | null} the display stream while frames are being sent */
    this.screenStream = null;
    /** @type {MediaStream | null} */
    this.micStream = null;
    /** @type {AudioContext | null} device-rate context for the microphone */
    this.captureContext = null;
    /** @type {AudioContext | null} 24 kHz context for the model's voice */
    this.playbackContext = null;
    /** @type {AudioWorkletNode | null} */
    this.captureNode = null;
    /** @type {AudioWorkletNode | null} */
    this.playerNode = null;
    /** @type {MediaStreamAudioSourceNode | null} */
    this.micSource = null;
    /** @type {MediaStreamTrack[]} every track of the current or last capture, ended included */
    this.allTracks = [];
    this.sent = { audio: 0, frames: 0, lastFrame: { width: 0, height: 0, bytes: 0 } };

    this.generation = 0;
    this.staleDropped = 0; // stale model chunks dropped on the main thread
    /** @type {LatencyTrace | null} on for benchmarks only */
    this.trace = null;
    this.attempt = 0; // bumps on every start and stop; in-flight starts compare against it
    this.startSent = false;
    this.captureId = "";
    this.audioSeq = 0;
    this.chunkMs = CHUNK_MS; // the capture's chunk length, from `audio_chunk_ms` at each Share
    this.frameSeq = 0;
    this.ackedAudioSeq = -1;
    this.ackSeen = false;
    this.lastAckAt = 0;
    this.liveSeenAt = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.frameTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.busyTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.noticeTimer = undefined;
    /** @type {Map<number, (stats: PlayerStats) => void>} */
    this.statsWaiters = new Map();
    this.statsId = 0;
    /** @type {Map<number, (entries: any[][]) => void>} */
    this.traceWaiters = new Map();
    /** @type {PlayerStats} */
    this.lastStats = emptyStats(0);

    this.video = document.createElement("video");
    this.video.muted = true;
    this.video.playsInline = true;
    this.canvas = document.createElement("canvas");
    this.thumbCanvas = document.createElement("canvas");
    this.thumbCanvas.width = THUMB_WIDTH;
    this.thumbCanvas.height = THUMB_HEIGHT;
    this.framePolicy = new FramePolicy();
    this.lastVoiceAt = -Infinity;
    this.lastFrameStatsAt = 0;
    /** @type {Map<number, string>} object URLs of recently sent frames, by seq */
    this.recentFrames = new Map();
    /** @type {{seq: number, url: string}[]} frames the model got, oldest first */
    this.filmstrip = [];

    /** Names this controller to the kernel (a page, in the kernel's eyes). */
    this.pageId = newCaptureId();
    /** @type {Set<string>} ids of the captures this controller started */
    this.ownCaptures = new Set();
    this.views = 0; // views of this model rendered in the page now
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.viewlessTimer = undefined;
    /** Why this model's kernel is gone ("" while it is there): nothing can be shared then. */
    this.kernelGone = "";
    this.sendFailures = 0;
    this.stoppedAt = -Infinity; // when this page last ended a capture (performance.now())
    this.lastError = String(model.get("error") || "");

    this.onCustom = this.onCustom.bind(this);
    this.onStatus = this.onStatus.bind(this);
    this.onError = this.onError.bind(this);
    this.onCommLive = this.onCommLive.bind(this);
    this.onKernelStatus = this.onKernelStatus.bind(this);
    // A page that closes or reloads ends its capture and, if the message still gets out,
    // the session at once (else the kernel's page timeout ends it).
    this.onPageHide = () => {
      if (this.phase !== "idle") this.stop(PAGE_CLOSED_REASON);
    };
    window.addEventListener("pagehide", this.onPageHide);
    model.on("msg:custom", this.onCustom);
    model.on("change:status", this.onStatus);
    model.on("change:error", this.onError);
    // ipywidgets marks every model's comm dead when its kernel restarts.
    model.on("comm_live_update", this.onCommLive);
    /** @type {any} JupyterLab's kernel connection, when the widget manager has one */
    this.kernel = kernelOf(model);
    this.kernel?.statusChanged?.connect?.(this.onKernelStatus);
    /** @type {(() => void) | null} stops the beat; null while the page does not beat */
    this.stopBeat = null;
    this.sendToKernel({ kind: "hello" });
    this.updateBeat();
  }

  // -- lifecycle --

  /** A view of this model was rendered. */
  viewAdded() {
    this.views++;
    clearTimeout(this.viewlessTimer);
  }

  /** A view of this model went away; with none left, sharing ends unless one comes back. */
  viewRemoved() {
    this.views = Math.max(0, this.views - 1);
    if (this.views > 0) return;
    clearTimeout(this.viewlessTimer);
    this.viewlessTimer = setTimeout(() => {
      if (this.views === 0 && this.phase !== "idle") this.stop(NO_VIEW_REASON);
    }, VIEWLESS_GRACE_MS);
  }

  /**
   * Beat while there is a session to keep (the kernel's status says one runs) or this page
   * captures: an idle assistant, and the many a re-run cell leaves behind, send nothing.
   */
  updateBeat() {
    const status = this.model.get("status");
    const active = status === "connecting" || status === "live" || status === "reconnecting";
    const wanted = !this.kernelGone && (active || this.phase !== "idle");
    if (wanted && !this.stopBeat) {
      this.stopBeat = startBeat(() => this.sendBeat());
      this.sendBeat(); // at once: the kernel hears this page from the session's start
    } else if (!wanted && this.stopBeat) {
      this.stopBeat();
      this.stopBeat = null;
    }
  }

  /** Tell the kernel this page is there, and which capture it runs. */
  sendBeat() {
    const capture = this.phase === "live" ? this.captureId : "";
    this.sendToKernel({ kind: "beat", page: this.pageId, capture, views: this.views });
  }

  onCommLive() {
    // Only a disconnect fires this after the model exists; a kernel that still answers
    // (a future widget manager reconnecting) keeps the session.
    const status = this.kernel?.status;
    if (status === "idle" || status === "busy") return;
    this.onKernelLost(KERNEL_RESTARTED);
  }

  /**
   * @param {unknown} _sender
   * @param {string} status
   */
  onKernelStatus(_sender, status) {
    if (!KERNEL_GONE_STATUSES.includes(status)) return;
    this.onKernelLost(status === "dead" ? KERNEL_DIED : KERNEL_RESTARTED);
  }

  /**
   * This model's kernel is gone: end capture (no message can reach it), say why, and keep
   * Share off; a new cell run makes a new model.
   * @param {string} reason
   */
  onKernelLost(reason) {
    if (this.kernelGone) return;
    this.kernelGone = reason;
    this.stop("", { fromKernel: true });
    this.updateBeat();
    this.emit("state");
    this.emit("gone"); // off the test seam: this model is dead
  }

  onError() {
    const error = String(this.model.get("error") || "");
    // The kernel's stop reason repeats its error as a notice: it goes when the error does.
    if (!error && this.notice && this.notice === this.lastError) {
      clearTimeout(this.noticeTimer);
      this.notice = "";
      this.emit("state");
    }
    this.lastError = error;
  }

  // -- kernel messages --

  /**
   * @param {any} msg
   * @param {DataView[]} [buffers]
   */
  onCustom(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    switch (msg.kind) {
      case "audio":
        this.onModelAudio(msg.gen, buffers?.[0]);
        break;
      case "interrupted":
        this.interrupt(msg.gen);
        break;
      case "turn_complete":
        this.playerNode?.port.postMessage({ cmd: "end", gen: this.genOf(msg.gen) });
        break;
      case "turn":
        this.setTurn(msg.index, msg.turn);
        break;
      case "snapshot":
        // How the last session ended, for a page that opens after it.
        if (typeof msg.ended === "string" && msg.ended && this.phase === "idle") {
          this.showNotice(msg.ended);
        }
        this.turns = Array.isArray(msg.turns) ? msg.turns.filter(isTurn) : [];
        this.tools = Array.isArray(msg.tools) ? msg.tools.filter(isToolCall) : [];
        this.emit("tools");
        if (Number.isInteger(msg.gen) && msg.gen > this.generation) {
          this.generation = msg.gen;
          this.playerNode?.port.postMessage({ cmd: "generation", gen: msg.gen });
        }
        this.emit("turns");
        break;
      case "tool":
        if (Number.isInteger(msg.index) && msg.index >= 0 && isToolCall(msg.tool)) {
          this.tools[msg.index] = msg.tool;
          this.emit("tools");
        }
        break;
      case "stop":
        this.stop(typeof msg.reason === "string" ? msg.reason : "", { fromKernel: true });
        break;
      case "capture":
        // Another page (or a view in another window) took over the session's sharing.
        if (this.phase !== "idle" && !this.ownCaptures.has(msg.capture)) {
          this.stop(MOVED_REASON, { fromKernel: true });
        }
        break;
      case "ack":
        this.onAck(msg.audio_seq);
        break;
      case "frame_sent":
        this.onFrameSent(msg.seq);
        break;
      case "notice":
        if (typeof msg.text === "string") this.showNotice(msg.text);
        break;
      default:
        break; // unknown kinds are ignored: newer kernels may add some
    }
  }

  /** @param {unknown} gen */
  genOf(gen) {
    return typeof gen === "number" && Number.isInteger(gen) ? gen : this.generation;
  }

  /**
   * @param {unknown} rawGen
   * @param {DataView | undefined} view
   */
  onModelAudio(rawGen, view) {
    const gen = this.genOf(rawGen);
    if (gen < this.generation) {
      this.staleDropped++;
      return;
    }
    this.generation = gen;
    if (!view || !this.playerNode) return; // not capturing: nobody is listening
    const samples = pcm16ToFloat(view);
    let trace;
    if (this.trace) {
      trace = this.trace.nextId++;
      const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      this.trace.down.set(trace, [performance.timeOrigin + performance.now(), pcmHash(bytes), null]);
    }
    this.playerNode.port.postMessage({ cmd: "push", gen, samples, trace }, [samples.buffer]);
  }

  /** @param {unknown} rawGen the new generation: older audio is stale */
  interrupt(rawGen) {
    this.generation = this.genOf(rawGen);
    const context = this.playbackContext;
    let trace;
    if (this.trace && this.playerNode && context) {
      trace = this.trace.nextId++;
      const received = performance.timeOrigin + performance.now();
      const frame = Math.round(context.currentTime * context.sampleRate);
      this.trace.pendingInterrupts.set(trace, [received, frame]);
    }
    this.playerNode?.port.postMessage({ cmd: "flush", gen: this.generation, trace });
  }

  /**
   * @param {unknown} index
   * @param {unknown} turn
   */
  setTurn(index, turn) {
    if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || !isTurn(turn)) {
      return;
    }
    this.turns[index] = turn;
    this.emit("turns", index);
  }

  /** @param {unknown} audioSeq */
  onAck(audioSeq) {
    if (typeof audioSeq === "number") this.ackedAudioSeq = audioSeq;
    this.ackSeen = true;
    this.lastAckAt = performance.now();
    this.checkBusy();
  }

  onStatus() {
    if (this.model.get("status") === "live") this.liveSeenAt = performance.now();
    this.updateBeat();
    this.checkBusy();
  }

  /** Busy: live, but the kernel stopped acknowledging what the page sends. */
  checkBusy() {
    let busy = false;
    if (this.phase === "live" && this.model.get("status") === "live") {
      const now = performance.now();
      const lagMs = (this.audioSeq - 1 - this.ackedAudioSeq) * this.chunkMs;
      const quietMs = now - Math.max(this.lastAckAt, this.liveSeenAt);
      busy = (this.ackSeen && lagMs > ACK_LAG_MS) || quietMs > ACK_SILENCE_MS;
    }
    if (busy !== this.busy) {
      this.busy = busy;
      this.emit("state");
    }
  }

  /**
   * @param {string} text
   * @param {{sticky?: boolean}} [options] sticky notices stay until the next Share
   */
  showNotice(text, { sticky = false } = {}) {
    clearTimeout(this.noticeTimer);
    this.notice = text;
    if (!sticky) {
      this.noticeTimer = setTimeout(() => {
        this.notice = "";
        this.emit("state");
      }, NOTICE_MS);
    }
    this.emit("state");
  }

  /**
   * @param {object} content
   * @param {ArrayBuffer[]} [buffers] exact ArrayBuffers only
   */
  sendToKernel(content, buffers) {
    if (this.kernelGone) return;
    try {
      this.model.send(content, undefined, buffers);
      this.sendFailures = 0;
    } catch (error) {
      // A send throws only once the comm or its kernel connection is closed for good.
      if (++this.sendFailures >= MAX_SEND_FAILURES) {
        console.warn("[screenshare-widget] the kernel connection is gone:", error);
        this.onKernelLost(KERNEL_LOST);
      }
    }
  }

  /** @param {string} message a sentence with the fix; shown here and sent to the kernel */
  fail(message) {
    this.pageError = message;
    this.emit("state");
    this.sendToKernel({ kind: "client_error", message });
  }

  // -- start (must run synchronously inside the Share click) --

  /** The Share click handler. getDisplayMedia is its first await (transient user activation). */
  async start() {
    if (this.phase !== "idle" || this.kernelGone) return;
    this.pageError = "";
    this.notice = "";
    const problem = unsupportedReason();
    if (problem) {
      this.fail(problem);
      return;
    }
    const attempt = ++this.attempt;
    const chunkMs = Math.round(Number(this.model.get("audio_chunk_ms")));
    this.chunkMs = chunkMs >= MIN_CHUNK_MS && chunkMs <= MAX_CHUNK_MS ? chunkMs : CHUNK_MS;
    this.phase = "starting";
    this.allTracks = [];
    this.emit("state");
    let stage = /** @type {"screen"|"microphone"|"audio"} */ ("audio");
    try {
      // Both contexts are created inside the click so autoplay rules let them run.
      this.captureContext = new AudioContext();
      this.playbackContext = new AudioContext({ sampleRate: OUTPUT_RATE_HZ });
      this.captureContext.resume().catch(() => {});
      this.playbackContext.resume().catch(() => {});

      stage = "screen";
      const screen = await navigator.mediaDevices.getDisplayMedia(DISPLAY_OPTIONS);
      if (attempt !== this.attempt) {
        stopStream(screen); // stopped while the picker was open
        return;
      }
      this.screenStream = screen;

      stage = "microphone";
      const mic = await navigator.mediaDevices.getUserMedia({ audio: MIC_CONSTRAINTS });
      if (attempt !== this.attempt) {
        stopStream(mic);
        return;
      }
      this.micStream = mic;
      if (mic.getAudioTracks().length === 0) {
        throw new DOMException("no audio track", "NotFoundError");
      }

      stage = "audio";
      await this.setUpAudio(attempt);
      if (attempt !== this.attempt) return;
      this.video.srcObject = screen;
      // Not awaited: the frame loop waits for dimensions, and a refused play() is only logged.
      this.video.play().catch((error) => console.warn("[screenshare-widget] preview:", error));
    } catch (error) {
      if (attempt !== this.attempt) return; // stopped meanwhile: nothing to report
      this.teardown();
      this.fail(describeFailure(stage, error));
      return;
    }
    for (const track of this.tracks()) {
      track.addEventListener("ended", () => this.onTrackEnded(track));
    }
    this.phase = "live";
    this.audioSeq = 0;
    this.frameSeq = 0;
    this.framePolicy = new FramePolicy();
    this.ackedAudioSeq = -1;
    this.ackSeen = false;
    this.liveSeenAt = performance.now();
    // Media carries this capture's id, so the kernel can drop what a stale view still sends.
    this.captureId = newCaptureId();
    this.ownCaptures.add(this.captureId);
    this.sendToKernel({ kind: "start", capture: this.captureId });
    if (this.kernelGone) return; // that send found the kernel gone: capture has ended
    this.startSent = true;
    // Media flows only after `start`, so the kernel never sees audio before it.
    if (this.captureNode && this.micSource) this.micSource.connect(this.captureNode);
    this.scheduleFrame(0);
    this.busyTimer = setInterval(() => this.checkBusy(), BUSY_CHECK_MS);
    this.updateBeat();
    this.emit("state");
  }

  /** @param {number} attempt */
  async setUpAudio(attempt) {
    const capture = /** @type {AudioContext} */ (this.captureContext);
    const playback = /** @type {AudioContext} */ (this.playbackContext);
    await Promise.all([
      loadWorklet(capture, CAPTURE_WORKLET_SOURCE),
      loadWorklet(playback, PLAYER_WORKLET_SOURCE),
    ]);
    if (attempt !== this.attempt) return;

    this.micSource = capture.createMediaStreamSource(/** @type {MediaStream} */ (this.micStream));
    this.captureNode = new AudioWorkletNode(capture, CAPTURE_PROCESSOR, {
      numberOfInputs: 1,
      numberOfOutputs: 0, // still pulled by the graph; nothing to hear
      channelCount: 1,
      channelCountMode: "explicit",
      channelInterpretation: "speakers",
      processorOptions: {
        taps: resamplerTaps(capture.sampleRate),
        outRate: INPUT_RATE_HZ,
        chunkSamples: (INPUT_RATE_HZ * this.chunkMs) / 1000,
      },
    });
    this.captureNode.port.onmessage = (event) => this.onMicChunk(event.data);

    this.playerNode = new AudioWorkletNode(playback, PLAYER_PROCESSOR, {
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
    this.playerNode.port.onmessage = (event) => this.onPlayerMessage(event.data);
    this.playerNode.connect(playback.destination);
  }

  // -- streaming --

  /** @param {{pcm: ArrayBuffer, rms: number}} data */
  onMicChunk({ pcm, rms }) {
    if (this.phase !== "live") return;
    const t = performance.timeOrigin + performance.now();
    this.trace?.up.push([t, pcmHash(new Uint8Array(pcm))]);
    this.sendToKernel(
      { kind: "audio", capture: this.captureId, seq: this.audioSeq++, t },
      [exactBuffer(pcm)],
    );
    this.sent.audio++;
    this.level = rmsToLevel(rms);
    this.emit("level", this.level);
    const now = performance.now();
    if (this.level >= SPEECH_LEVEL) {
      if (now - this.lastVoiceAt > SPEECH_GAP_MS) this.framePolicy.speechStarted();
      this.lastVoiceAt = now;
    }
  }

  /** @param {{cmd: string, id?: number, stats: PlayerStats, entries?: any[][]}} data */
  onPlayerMessage(data) {
    if (data.cmd === "trace") {
      const waiter = data.id === undefined ? undefined : this.traceWaiters.get(data.id);
      if (waiter) waiter(data.entries ?? []);
      else this.trace?.orphans.push(...(data.entries ?? [])); // its request had timed out
      this.traceWaiters.delete(data.id);
      return;
    }
    const stats = { ...data.stats, stale: data.stats.stale + this.staleDropped };
    this.lastStats = stats;
    if (data.cmd === "stats" && data.id !== undefined) {
      this.statsWaiters.get(data.id)?.(stats);
      this.statsWaiters.delete(data.id);
    } else if (data.cmd === "report") {
      const perMs = OUTPUT_RATE_HZ / 1000;
      this.sendToKernel({
        kind: "playback",
        played_ms: stats.played / perMs,
        queued_ms: stats.queued / perMs,
        underruns: stats.underruns,
        dropped_chunks: stats.dropped,
      });
    }
  }

  /** @param {number} delayMs */
  scheduleFrame(delayMs) {
    clearTimeout(this.frameTimer);
    this.frameTimer = setTimeout(() => this.captureFrame(), delayMs);
  }

  /** Frame interval from the `max_fps` trait, never faster than MAX_FPS (ms). */
  frameIntervalMs() {
    const fps = Number(this.model.get("max_fps"));
    return 1000 / (fps > 0 ? Math.min(fps, MAX_FPS) : MAX_FPS);
  }

  /** A luma thumbnail of the shared screen now. */
  screenThumb() {
    const ctx = this.thumbCanvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) return new Uint8Array(0);
    ctx.drawImage(this.video, 0, 0, THUMB_WIDTH, THUMB_HEIGHT);
    return luma(ctx.getImageData(0, 0, THUMB_WIDTH, THUMB_HEIGHT).data);
  }

  /** Look at the screen, send a frame if the policy says so, and look again in CHECK_MS. */
  async captureFrame() {
    const attempt = this.attempt;
    const video = this.video;
    if (!this.screenStream) return;
    if (!video.videoWidth || !video.videoHeight) {
      this.scheduleFrame(FRAME_RETRY_MS);
      return;
    }
    try {
      const now = performance.now();
      const thumb = this.screenThumb();
      const minChange = Number(this.model.get("min_change"));
      const heartbeat = Number(this.model.get("heartbeat_s"));
      const reason = this.framePolicy.decide(now, thumb, {
        minChange: minChange >= 0 ? minChange : DEFAULT_MIN_CHANGE,
        heartbeatMs: 1000 * (heartbeat > 0 ? heartbeat : DEFAULT_HEARTBEAT_S),
        intervalMs: this.frameIntervalMs(),
        paused: !!this.model.get("video_paused"),
      });
      if (reason) {
        const sent = await this.sendFrame(attempt, reason);
        if (attempt !== this.attempt || !this.screenStream) return;
        if (sent) this.framePolicy.sent(now, thumb, reason);
      }
      this.reportFrameStats();
    } catch (error) {
      console.warn("[screenshare-widget] frame capture failed:", error);
    }
    this.scheduleFrame(CHECK_MS);
  }

  /**
   * Draw the shared screen scaled to `max_size`, encode a JPEG and send it.
   * @param {number} attempt
   * @param {string} reason why the policy sends it
   * @returns {Promise<boolean>} whether it went out
   */
  async sendFrame(attempt, reason) {
    const video = this.video;
    const maxSide = Number(this.model.get("max_size")) || DEFAULT_MAX_SIZE_PX;
    const q = Number(this.model.get("jpeg_quality"));
    const quality = q >= 0 && q <= 1 ? q : DEFAULT_JPEG_QUALITY;
    const { width, height } = fitSize(video.videoWidth, video.videoHeight, maxSide);
    this.canvas.width = width;
    this.canvas.height = height;
    this.canvas.getContext("2d")?.drawImage(video, 0, 0, width, height);
    const blob = /** @type {Blob | null} */ (
      await new Promise((resolve) => {
        this.canvas.toBlob(resolve, "image/jpeg", quality);
      })
    );
    if (attempt !== this.attempt || !this.screenStream || !blob) return false;
    const jpeg = await blob.arrayBuffer();
    if (attempt !== this.attempt || !this.screenStream) return false;
    const t = performance.timeOrigin + performance.now();
    const seq = this.frameSeq++;
    this.sendToKernel(
      { kind: "frame", capture: this.captureId, seq, t, width, height, reason },
      [jpeg],
    );
    this.sent.frames++;
    this.sent.lastFrame = { width, height, bytes: jpeg.byteLength };
    this.recentFrames.set(seq, URL.createObjectURL(blob));
    for (const [old, url] of this.recentFrames) {
      if (this.recentFrames.size <= FILMSTRIP_FRAMES * 2) break;
      if (!this.filmstrip.some((f) => f.url === url)) URL.revokeObjectURL(url);
      this.recentFrames.delete(old);
    }
    return true;
  }

  /** Every FRAME_STATS_MS, tell the kernel what the frame policy checked, sent and skipped. */
  reportFrameStats() {
    const now = performance.now();
    if (now - this.lastFrameStatsAt < FRAME_STATS_MS) return;
    this.lastFrameStatsAt = now;
    this.sendToKernel({ kind: "frame_stats", ...this.framePolicy.counts });
  }

  /**
   * The kernel sent frame `seq` to the model: show it in the filmstrip.
   * @param {unknown} seq
   */
  onFrameSent(seq) {
    if (typeof seq !== "number") return;
    const url = this.recentFrames.get(seq);
    if (!url) return;
    this.filmstrip.push({ seq, url });
    while (this.filmstrip.length > FILMSTRIP_FRAMES) {
      const old = /** @type {{seq: number, url: string}} */ (this.filmstrip.shift());
      if (!this.recentFrames.has(old.seq)) URL.revokeObjectURL(old.url);
    }
    this.emit("filmstrip");
  }

  /** @param {MediaStreamTrack} track */
  onTrackEnded(track) {
    if (this.phase !== "live") return;
    if (this.tracks().every((t) => t.readyState === "ended")) {
      this.stop(ALL_ENDED_REASON);
    } else if (track.kind === "video") {
      clearTimeout(this.frameTimer);
      this.screenStream = null;
      this.video.srcObject = null;
      this.showNotice(SCREEN_ENDED_NOTICE, { sticky: true });
    } else {
      this.level = 0;
      this.emit("level", 0);
      this.showNotice(MIC_ENDED_NOTICE, { sticky: true });
    }
  }

  // -- stop --

  /**
   * End capture and playback. Idempotent; also cancels a start in progress.
   * @param {string} reason
   * @param {{fromKernel?: boolean}} [options] the kernel asked: show the reason, do not echo
   */
  stop(reason, { fromKernel = false } = {}) {
    const wasActive = this.phase !== "idle" || this.captureContext !== null;
    const announce = this.startSent && !fromKernel;
    // The last counts, so `frame_policy` in Python matches the frames the model got.
    if (this.startSent) this.sendToKernel({ kind: "frame_stats", ...this.framePolicy.counts });
    this.teardown();
    if (fromKernel && reason) this.showNotice(reason, { sticky: true });
    if (!wasActive) return;
    if (announce) this.sendToKernel({ kind: "stop", reason, capture: this.captureId });
    this.emit("state");
  }

  /** Release every resource this controller holds (no messages). */
  teardown() {
    this.attempt++;
    this.startSent = false;
    clearTimeout(this.frameTimer);
    clearInterval(this.busyTimer);
    this.busyTimer = undefined;
    for (const track of this.tracks()) track.stop();
    this.screenStream = null;
    this.micStream = null;
    this.micSource?.disconnect();
    if (this.captureNode) this.captureNode.port.onmessage = null;
    this.captureNode?.disconnect();
    this.playerNode?.disconnect();
    for (const context of [this.captureContext, this.playbackContext]) {
      if (context && context.state !== "closed") context.close().catch(() => {});
    }
    for (const resolve of this.statsWaiters.values()) resolve(this.lastStats);
    this.statsWaiters.clear();
    this.micSource = null;
    this.captureNode = null;
    this.playerNode = null;
    this.captureContext = null;
    this.playbackContext = null;
    this.video.pause();
    this.video.srcObject = null;
    this.phase = "idle";
    this.stoppedAt = performance.now();
    this.busy = false;
    clearTimeout(this.noticeTimer);
    this.notice = ""; // notices are about this capture
    this.level = 0;
    this.emit("level", 0);
    this.updateBeat();
    // The view shows what this page shares once the kernel had time to say it stopped.
    setTimeout(() => this.emit("state"), STOP_SETTLE_MS + 50);
  }

  /** @returns {MediaStreamTrack[]} the current (or last) capture's tracks, ended ones included */
  tracks() {
    const live = [
      ...(this.screenStream?.getTracks() ?? []),
      ...(this.micStream?.getTracks() ?? []),
    ];
    // Remember tracks so that `tracks()` still lists a screen track after it ended.
    this.allTracks = [...new Set([...this.allTracks, ...live])];
    return this.allTracks;
  }

  /** @returns {Promise<PlayerStats>} */
  stats() {
    const node = this.playerNode;
    if (!node || this.playbackContext?.state === "closed") {
      return Promise.resolve({ ...this.lastStats, generation: this.generation });
    }
    const id = ++this.statsId;
    return new Promise((resolve) => {
      this.statsWaiters.set(id, resolve);
      node.port.postMessage({ cmd: "stats", id });
    });
  }

  /** Start the latency trace (benchmarks only; see LatencyTrace); a trace on goes on. */
  startTrace() {
    this.trace ??= new LatencyTrace();
  }

  /**
   * What the latency trace holds that is final, taken out of it (see LatencyTrace); with
   * `all`, model chunks that have not played yet too (their output null).
   * @param {boolean} [all]
   * @returns {Promise<{up: any[], down: any[], interrupts: any[]}>}
   */
  async takeTrace(all = false) {
    const trace = this.trace;
    if (!trace) return { up: [], down: [], interrupts: [] };
    const node = this.playerNode;
    const context = this.playbackContext;
    let entries = /** @type {any[][]} */ ([]);
    if (node && context && context.state !== "closed") {
      const id = ++this.statsId;
      entries = await new Promise((resolve) => {
        this.traceWaiters.set(id, resolve);
        node.port.postMessage({ cmd: "trace", id });
        setTimeout(() => {
          this.traceWaiters.delete(id);
          resolve([]); // a suspended or closing context answers nothing
        }, 1000);
      });
    }
    if (context) return trace.settle(entries, context, all);
    const up = trace.up;
    trace.up = [];
    return { up, down: [], interrupts: [] };
  }

  /** The test seam's view of this controller (see the module docstring). */
  seam() {
    const self = this;
    return {
      get captureContext() {
        return self.captureContext;
      },
      get playbackContext() {
        return self.playbackContext;
      },
      get playerNode() {
        return self.playerNode;
      },
      tracks: () => [...self.tracks()],
      stats: () => self.stats(),
      sent: self.sent,
      startTrace: () => self.startTrace(),
      takeTrace: (/** @type {boolean} */ all) => self.takeTrace(all),
    };
  }

  dispose() {
    this.stop("The widget was closed.");
    this.stopBeat?.();
    this.stopBeat = null;
    clearTimeout(this.noticeTimer);
    clearTimeout(this.viewlessTimer);
    this.kernel?.statusChanged?.disconnect?.(this.onKernelStatus);
    window.removeEventListener("pagehide", this.onPageHide);
    this.model.off("msg:custom", this.onCustom);
    this.model.off("change:status", this.onStatus);
    this.model.off("change:error", this.onError);
    this.model.off("comm_live_update", this.onCommLive);
  }
}

/**
 * The kernel connection of the model's widget manager (JupyterLab, Notebook 7), if any; its
 * status tells when the kernel restarts or dies.
 * @param {WidgetModel} model
 * @returns {any}
 */
function kernelOf(model) {
  try {
    const manager = /** @type {any} */ (model).widget_manager;
    const kernel = manager?.kernel ?? manager?.context?.sessionContext?.session?.kernel;
    return kernel && typeof kernel.statusChanged?.connect === "function" ? kernel : null;
  } catch {
    return null;
  }
}

/**
 * @param {number} generation
 * @returns {PlayerStats}
 */
function emptyStats(generation) {
  return { played: 0, queued: 0, underruns: 0, dropped: 0, stale: 0, generation, flushedAt: -1 };
}

/**
 * @param {unknown} call
 * @returns {call is ToolCall}
 */
function isToolCall(call) {
  return !!call && typeof call === "object" && typeof (/** @type {any} */ (call).name) === "string";
}

/**
 * @param {unknown} turn
 * @returns {turn is Turn}
 */
function isTurn(turn) {
  return !!turn && typeof turn === "object" && typeof (/** @type {any} */ (turn).text) === "string";
}

/**
 * Register a controller's seam on `globalThis.__screenshareWidget` (created on first use).
 * @param {Controller} controller
 * @returns {() => void} unregisters it
 */
function registerSeam(controller) {
  const g = /** @type {any} */ (globalThis);
  g.__screenshareWidget ??= { controllers: [] };
  const seam = controller.seam();
  g.__screenshareWidget.controllers.push(seam);
  return () => {
    const list = g.__screenshareWidget.controllers;
    const i = list.indexOf(seam);
    if (i >= 0) list.splice(i, 1);
  };
}

// ---- view ------------------------------------------------------------------------------------

/** Traits a view shows; it re-renders its header when any of them changes. */
const VIEW_TRAITS = [
  "status", "error", "backend", "emulated", "model", "voice", "live_since", "connection",
  "system_instruction", "instruction_version", "instruction_applied", "recording",
  "video_paused", "tokens", "cost_usd", "budget_tokens", "budget_usd", "others_live",
  "last_turn_tokens", "projected_10min_tokens", "projected_10min_usd",
];

/** Longest text the text box sends (characters); the kernel refuses longer. */
const MAX_TEXT_CHARS = 10000;

/**
 * @param {string} tag
 * @param {string} className
 * @param {string} [text]
 * @returns {HTMLElement}
 */
function h(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Build one view's DOM. */
function buildView() {
  const root = h("div", "ssw");
  const bar = h("div", "ssw-bar");
  const share = /** @type {HTMLButtonElement} */ (
    h("button", "ssw-button ssw-share", "Share screen & mic")
  );
  const stop = /** @type {HTMLButtonElement} */ (h("button", "ssw-button ssw-stop", "Stop"));
  const pause = /** @type {HTMLButtonElement} */ (
    h("button", "ssw-button ssw-pause-video", "Pause video")
  );
  pause.title = "Stop sending screen frames to the model (the voice conversation goes on)";
  share.type = stop.type = pause.type = "button";
  const status = h("span", "ssw-status");
  const timer = h("span", "ssw-timer");
  const connection = h("span", "ssw-connection");
  connection.title = "How the conversation survived its last move to a new connection";
  const backend = h("span", "ssw-backend");
  const engine = h("span", "ssw-engine");
  const backendBox = h("span", "ssw-backend-box");
  backendBox.append(backend, engine);
  const recording = h("span", "ssw-recording");
  const spend = h("span", "ssw-spend");
  spend.title =
    "Tokens the service reported (and the cost estimate from assistant.prices). Each turn " +
    "re-bills the whole context, so the last turn grows; the next 10 minutes are projected " +
    "at the recent turn rate, a floor.";
  bar.append(share, stop, pause, status, timer, connection, recording, spend, backendBox);

  const error = h("div", "ssw-error");
  error.setAttribute("role", "alert");
  const notice = h("div", "ssw-notice");
  notice.setAttribute("role", "status");
  const others = h("div", "ssw-others");
  others.setAttribute("role", "status");

  const body = h("div", "ssw-body");
  const previewBox = h("div", "ssw-preview-box");
  const preview = /** @type {HTMLVideoElement} */ (h("video", "ssw-preview"));
  preview.muted = true;
  preview.playsInline = true;
  preview.autoplay = true;
  preview.setAttribute("muted", "");
  preview.setAttribute("playsinline", "");
  const previewEmpty = h("div", "ssw-preview-empty", "Nothing shared");
  previewBox.append(preview, previewEmpty);

  const side = h("div", "ssw-side");
  const meterRow = h("div", "ssw-meter-row");
  const meter = h("div", "ssw-meter");
  meter.title = "Microphone level";
  const meterFill = h("div", "ssw-meter-fill");
  meter.append(meterFill);
  meterRow.append(h("span", "ssw-meter-label", "Mic"), meter);
  const transcript = h("div", "ssw-transcript");
  transcript.setAttribute("aria-live", "polite");
  const compose = /** @type {HTMLFormElement} */ (h("form", "ssw-compose"));
  const textInput = /** @type {HTMLInputElement} */ (h("input", "ssw-text-input"));
  textInput.type = "text";
  textInput.placeholder = "Type to the assistant…";
  textInput.maxLength = MAX_TEXT_CHARS;
  textInput.setAttribute("aria-label", "Message to the assistant");
  const send = /** @type {HTMLButtonElement} */ (h("button", "ssw-button ssw-send", "Send"));
  send.type = "submit";
  compose.append(textInput, send);
  const tools = h("div", "ssw-tools");
  tools.setAttribute("aria-label", "Tool calls");
  side.append(meterRow, transcript, tools, compose);
  body.append(previewBox, side);

  const instruction = /** @type {HTMLDetailsElement} */ (h("details", "ssw-instruction"));
  const instructionSummary = h("summary", "ssw-instruction-summary", "System instruction");
  const instructionText = /** @type {HTMLTextAreaElement} */ (
    h("textarea", "ssw-instruction-text")
  );
  instructionText.rows = 4;
  instructionText.setAttribute("aria-label", "System instruction");
  const instructionRow = h("div", "ssw-instruction-row");
  const apply = /** @type {HTMLButtonElement} */ (h("button", "ssw-button ssw-apply", "Apply"));
  apply.type = "button";
  const revert = /** @type {HTMLButtonElement} */ (h("button", "ssw-button ssw-revert", "Revert"));
  revert.type = "button";
  const instructionState = h("span", "ssw-instruction-state");
  instructionRow.append(apply, revert, instructionState);
  instruction.append(instructionSummary, instructionText, instructionRow);

  const filmstrip = h("div", "ssw-filmstrip");
  filmstrip.title = "The latest frames the model got";
  root.append(bar, error, notice, others, body, filmstrip, instruction);
  return {
    root, share, stop, pause, status, timer, connection, recording, backend, engine, error, notice,
    others,
    filmstrip, spend,
    previewBox, preview, meter, meterFill, transcript, tools, compose, textInput, send, instruction,
    instructionSummary, instructionText, apply, revert, instructionState,
  };
}

/**
 * @param {Turn} turn
 * @param {HTMLElement} [row] an existing row to update
 */
function renderTurn(turn, row = h("div", "ssw-turn")) {
  const role = turn.role === "user" ? "user" : "model";
  row.className = "ssw-turn"; // the row may have been a placeholder for a missing index
  row.dataset.role = role;
  if (turn.interrupted) row.dataset.interrupted = "true";
  else delete row.dataset.interrupted;
  if (turn.ended_at == null) row.dataset.partial = "true";
  else delete row.dataset.partial;
  if (turn.typed) row.dataset.typed = "true";
  else delete row.dataset.typed;
  const label = h("span", "ssw-role", role === "user" ? "You" : "Assistant");
  const version = Number(turn.instruction) || 1;
  row.dataset.instruction = String(version);
  if (version > 1) {
    const tag = h("span", "ssw-version", ` v${version}`);
    tag.title = `Under system instruction v${version}`;
    label.append(tag);
  }
  row.replaceChildren(label, h("span", "ssw-text", turn.text));
  return row;
}

/** Tool calls the view lists (the latest). */
const TOOLS_SHOWN = 8;

/**
 * @param {ToolCall} call
 * @param {(id: string, allow: boolean) => void} decide
 */
function renderToolCall(call, decide) {
  const row = h("div", "ssw-tool");
  row.dataset.outcome = call.outcome;
  const head = h("span", "ssw-tool-call", `${call.name}(${call.args === "{}" ? "" : call.args})`);
  const time =
    typeof call.duration_ms === "number" ? ` · ${Math.round(call.duration_ms)} ms` : " · running…";
  const body =
    call.outcome === "ok"
      ? `→ ${call.result}`
      : call.outcome === "error"
        ? `failed: ${call.error}`
        : call.outcome === "cancelled"
          ? "cancelled"
          : "";
  row.append(h("span", "ssw-role", "Tool"), head, h("span", "ssw-tool-result", body + time));
  if (call.confirm && call.outcome === "running" && call.id) {
    const id = call.id;
    const ask = h("span", "ssw-tool-confirm", "Run this in your kernel? ");
    const allow = /** @type {HTMLButtonElement} */ (h("button", "ssw-button ssw-allow", "Allow"));
    const deny = /** @type {HTMLButtonElement} */ (h("button", "ssw-button ssw-deny", "Deny"));
    allow.type = deny.type = "button";
    allow.addEventListener("click", () => decide(id, true), { once: true });
    deny.addEventListener("click", () => decide(id, false), { once: true });
    ask.append(allow, deny);
    row.append(h("span", ""), ask);
  }
  return row;
}

// ---- the module ------------------------------------------------------------------------------

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
      unregister = registerSeam(controller);
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
      const ui = buildView();
      el.replaceChildren(ui.root);
      /** @type {HTMLElement[]} */
      let rows = [];
      /** @type {ReturnType<typeof setInterval> | undefined} */
      let clock;

      const showTimer = () => {
        const since = Number(model.get("live_since")) || 0;
        // The session's clock runs on while a connection is being replaced.
        const status = model.get("status");
        const running = status === "live" || status === "reconnecting";
        const live = running && since > 0 && !ctl.kernelGone;
        ui.timer.textContent = live ? formatElapsed(Date.now() / 1000 - since) : "";
        ui.timer.hidden = !live;
        if (live && clock === undefined) clock = setInterval(showTimer, 1000);
        if (!live && clock !== undefined) {
          clearInterval(clock);
          clock = undefined;
        }
      };

      const showState = () => {
        // A kernel that is gone cannot say it stopped: its last status would stay up.
        const status = ctl.kernelGone ? "disconnected" : model.get("status") || "idle";
        ui.status.textContent = status;
        ui.status.dataset.status = status;
        const connection = model.get("connection") || "";
        ui.connection.textContent = connection;
        ui.connection.dataset.connection = connection;
        ui.connection.hidden = !connection;
        ui.root.dataset.status = status;
        ui.root.dataset.phase = ctl.phase;
        ui.share.disabled = ctl.phase !== "idle" || !!ctl.kernelGone;
        ui.share.setAttribute("aria-busy", String(ctl.phase === "starting"));
        const kernelActive = ["connecting", "live", "reconnecting"].includes(status);
        ui.stop.disabled = ctl.phase === "idle" && !kernelActive;
        ui.root.dataset.kernel = ctl.kernelGone ? "gone" : "ok";
        // Nothing here reaches a kernel that is gone.
        for (const control of [ui.pause, ui.send, ui.textInput]) {
          control.disabled = !!ctl.kernelGone;
        }

        const emulated = !!model.get("emulated");
        let backend = model.get("backend") || "";
        if (emulated && !/emulator/i.test(backend)) {
          backend = backend ? `Local Live emulator (${backend})` : "Local Live emulator";
        }
        ui.backend.textContent = backend;
        ui.backend.hidden = !backend;
        ui.backend.dataset.emulated = String(emulated);
        const engine = [model.get("model"), model.get("voice")].filter(Boolean).join(" · ");
        ui.engine.textContent = engine;
        ui.engine.hidden = !engine;
        // The projection only while a session runs: the traits keep the last report's.
        const running = ["connecting", "live", "reconnecting"].includes(model.get("status"));
        ui.spend.textContent = formatSpend({
          tokens: Number(model.get("tokens")) || 0,
          costUsd: Number(model.get("cost_usd")),
          budgetTokens: Number(model.get("budget_tokens")) || 0,
          budgetUsd: Number(model.get("budget_usd")) || 0,
          lastTurnTokens: Number(model.get("last_turn_tokens")) || 0,
          projectedTokens: running ? Number(model.get("projected_10min_tokens")) : -1,
          projectedUsd: running ? Number(model.get("projected_10min_usd")) : -1,
        });
        ui.spend.hidden = !ui.spend.textContent;
        const paused = !!model.get("video_paused");
        ui.pause.textContent = paused ? "Resume video" : "Pause video";
        ui.pause.setAttribute("aria-pressed", String(paused));
        ui.root.dataset.videoPaused = String(paused);
        const recording = model.get("recording") || "";
        ui.recording.textContent = recording ? "● REC" : "";
        ui.recording.title = recording ? `Recording to ${recording}` : "";
        ui.recording.hidden = !recording;
        showInstruction();

        const traitError = ctl.kernelGone ? "" : model.get("error") || "";
        const errors = [ctl.kernelGone, ctl.pageError, traitError].filter(Boolean);
        ui.error.textContent = [...new Set(errors)].join(" ");
        ui.error.hidden = errors.length === 0;
        let notice = ctl.busy ? BUSY_NOTICE : ctl.notice;
        const settling = performance.now() - ctl.stoppedAt < STOP_SETTLE_MS;
        if (!notice && ctl.phase === "idle" && status === "live" && !settling) {
          notice = NOT_SHARED_NOTICE;
        }
        // A failing kernel also sends its error as the stop reason: show it once.
        if (errors.includes(notice)) notice = "";
        ui.notice.textContent = notice;
        ui.notice.hidden = !notice;
        ui.notice.dataset.busy = String(ctl.busy);
        const others = ctl.kernelGone ? 0 : Number(model.get("others_live")) || 0;
        ui.others.textContent =
          others === 1
            ? "Another assistant in this kernel also has a session running, and each one is " +
              "billed: stop the one you do not use."
            : others > 1
              ? `${others} other assistants in this kernel also have sessions running, and ` +
                "each one is billed: stop those you do not use."
              : "";
        ui.others.hidden = !others;

        const stream = ctl.screenStream;
        if (ui.preview.srcObject !== stream) ui.preview.srcObject = stream;
        ui.previewBox.dataset.active = String(!!stream);
        showTimer();
      };

      // The instruction box follows the kernel's value unless the user is editing it.
      let editing = false;
      const showInstruction = () => {
        const text = model.get("system_instruction") || "";
        if (!editing && ui.instructionText.value !== text) ui.instructionText.value = text;
        const latest = Number(model.get("instruction_version")) || 1;
        const applied = Number(model.get("instruction_applied")) || 0;
        let state = `v${latest}`;
        if (applied >= latest) state += " · the model has it";
        else if (applied > 0) state += ` · waiting for the next turn (the model has v${applied})`;
        else state += " · used when the session starts";
        if (editing) state = `edited · Apply to make v${latest + 1}`;
        ui.instructionState.textContent = state;
        ui.instructionSummary.textContent = `System instruction (v${latest})`;
        ui.instruction.dataset.version = String(latest);
        ui.instruction.dataset.applied = String(applied);
        ui.apply.disabled = !editing || !!ctl.kernelGone;
        ui.revert.disabled = !editing;
      };
      const onInstructionInput = () => {
        editing = ui.instructionText.value !== (model.get("system_instruction") || "");
        showInstruction();
      };
      const onApply = () => {
        model.set("system_instruction", ui.instructionText.value);
        model.save_changes();
        editing = false;
        showInstruction();
      };
      const onRevert = () => {
        editing = false;
        ui.instructionText.value = model.get("system_instruction") || "";
        showInstruction();
      };
      /** @param {SubmitEvent} event */
      const onSend = (event) => {
        event.preventDefault();
        const text = ui.textInput.value.trim();
        if (!text) return;
        ctl.sendToKernel({ kind: "text", text: text.slice(0, MAX_TEXT_CHARS) });
        ui.textInput.value = "";
      };
      // Keys typed here are the user's text, not notebook shortcuts (Shift+Enter, A, B, ...).
      /** @param {KeyboardEvent} event */
      const keepKeys = (event) => {
        event.stopPropagation();
        if (event.key === "Enter" && event.target === ui.instructionText && event.ctrlKey) {
          event.preventDefault();
          if (editing) onApply();
        }
      };

      /** @param {number} level */
      const showLevel = (level) => {
        ui.meterFill.style.width = `${Math.round(level * 100)}%`;
        ui.meter.dataset.level = level.toFixed(2);
      };

      /** @param {number} [index] the one turn that changed; all when omitted */
      const showTurns = (index) => {
        const box = ui.transcript;
        const turns = ctl.turns;
        if (index !== undefined && index < rows.length && rows[index] && turns[index]) {
          renderTurn(turns[index], rows[index]);
        } else if (index !== undefined && index === rows.length && turns[index]) {
          rows.push(renderTurn(turns[index]));
          box.append(rows[index]);
        } else {
          rows = turns.map((turn) => (turn ? renderTurn(turn) : h("div", "ssw-gap")));
          box.replaceChildren(...rows);
        }
        box.querySelector(".ssw-empty")?.remove();
        if (rows.length === 0) box.append(h("div", "ssw-empty", EMPTY_TRANSCRIPT));
        if (following) box.scrollTop = box.scrollHeight;
      };
      // The transcript follows the newest turn unless the user scrolled up to read. A view
      // that opens with history is not laid out yet: it follows once it has a size.
      let following = true;
      const onTranscriptScroll = () => {
        const box = ui.transcript;
        if (box.clientHeight > 0) {
          following = box.scrollTop + box.clientHeight >= box.scrollHeight - 24;
        }
      };
      const sized = new ResizeObserver(() => {
        if (following) ui.transcript.scrollTop = ui.transcript.scrollHeight;
      });
      sized.observe(ui.transcript);

      const showTools = () => {
        const calls = ctl.tools.filter(Boolean).slice(-TOOLS_SHOWN);
        /** @type {(id: string, allow: boolean) => void} */
        const decide = (id, allow) => ctl.sendToKernel({ kind: "confirm", id, allow });
        ui.tools.replaceChildren(...calls.map((call) => renderToolCall(call, decide)));
        ui.tools.hidden = calls.length === 0;
      };

      const showFilmstrip = () => {
        ui.filmstrip.replaceChildren(
          ...ctl.filmstrip.map(({ seq, url }) => {
            const img = /** @type {HTMLImageElement} */ (h("img", "ssw-film"));
            img.src = url;
            img.alt = `frame ${seq}`;
            img.dataset.seq = String(seq);
            return img;
          }),
        );
        ui.filmstrip.hidden = ctl.filmstrip.length === 0;
      };
      const onPause = () => {
        model.set("video_paused", !model.get("video_paused"));
        model.save_changes();
      };

      const onShare = () => {
        void ctl.start(); // synchronous up to getDisplayMedia: keeps the user activation
      };
      const onStop = () => {
        // Nothing captured here (say, after a page reload) but the kernel may still be live.
        if (ctl.phase === "idle") ctl.sendToKernel({ kind: "stop", reason: USER_STOP_REASON });
        else ctl.stop(USER_STOP_REASON);
      };
      // One abort removes every DOM listener of this view.
      const listening = new AbortController();
      const until = { signal: listening.signal };
      ui.share.addEventListener("click", onShare, until);
      ui.stop.addEventListener("click", onStop, until);
      ui.pause.addEventListener("click", onPause, until);
      ui.compose.addEventListener("submit", onSend, until);
      ui.apply.addEventListener("click", onApply, until);
      ui.revert.addEventListener("click", onRevert, until);
      ui.instructionText.addEventListener("input", onInstructionInput, until);
      ui.transcript.addEventListener("scroll", onTranscriptScroll, until);
      for (const field of [ui.textInput, ui.instructionText]) {
        field.addEventListener("keydown", keepKeys, until);
      }
      const unsubscribe = [
        ctl.on("state", showState),
        ctl.on("level", showLevel),
        ctl.on("turns", showTurns),
        ctl.on("tools", showTools),
        ctl.on("filmstrip", showFilmstrip),
      ];
      for (const trait of VIEW_TRAITS) model.on(`change:${trait}`, showState);

      showState();
      showLevel(ctl.level);
      showTurns();
      showTools();
      showFilmstrip();

      let cleaned = false;
      const cleanup = () => {
        if (cleaned) return;
        cleaned = true;
        ctl.viewRemoved();
        listening.abort();
        sized.disconnect();
        for (const off of unsubscribe) off();
        for (const trait of VIEW_TRAITS) model.off(`change:${trait}`, showState);
        clearInterval(clock);
        ui.preview.srcObject = null;
        ui.root.remove();
      };
      signal?.addEventListener("abort", cleanup, { once: true });
      return cleanup;
    },
  };
}
