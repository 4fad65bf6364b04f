// @ts-check
/**
 * The wire protocol between the page and the kernel: the message kinds, the limits both sides
 * enforce, a builder per kind the page sends, and guards for what the kernel sends. Internal
 * module; pure (no DOM).
 *
 * Kinds and limits kept in sync with screenshare_widget/protocol.py
 * (tests/test_protocol_sync.py compares them, and the `case` labels of the page's dispatch).
 */

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
  "set",
  "device",
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

/**
 * Limits the kernel enforces on what the page sends (protocol.LIMITS in Python).
 * - `max_text_chars`: longest typed text (characters); the kernel refuses longer;
 * - `max_instruction_chars`: longest system instruction the box may apply (characters);
 * - `min_chunk_ms`, `max_chunk_ms`: accepted `audio_chunk_ms` values (ms);
 * - `max_fps`: screen frames per second never exceed this, whatever `max_fps` says.
 */
export const LIMITS = Object.freeze({
  max_text_chars: 10_000,
  max_instruction_chars: 200_000,
  min_chunk_ms: 20,
  max_chunk_ms: 250,
  max_fps: 1,
});

/** How often the page tells the kernel it is there (ms) while a session runs or it shares,
 * muted or not; kept in sync with BEAT_INTERVAL_S in screenshare_widget/protocol.py. The
 * kernel ends a session whose page went silent (see screenshare_widget/liveness.py). */
export const BEAT_MS = 2_000;

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
 * The frame policy's counters as `frame_stats` carries them.
 * @typedef {{checked: number, sent: number, skipped: number, first: number, change: number,
 *   speech: number, heartbeat: number}} FrameCounts
 */

/**
 * @param {unknown} call
 * @returns {call is ToolCall}
 */
export function isToolCall(call) {
  return !!call && typeof call === "object" && typeof (/** @type {any} */ (call).name) === "string";
}

/**
 * @param {unknown} turn
 * @returns {turn is Turn}
 */
export function isTurn(turn) {
  return !!turn && typeof turn === "object" && typeof (/** @type {any} */ (turn).text) === "string";
}

/**
 * @param {unknown} value
 * @returns {value is number} a whole number (generations, indexes, sequence numbers)
 */
export function isWhole(value) {
  return typeof value === "number" && Number.isInteger(value);
}

// ---- what the page sends (one builder per kind) ----------------------------------------------

/** The page opened: the kernel answers with a snapshot. */
export const hello = () => ({ kind: /** @type {const} */ ("hello") });

/**
 * The page is there, and which capture it runs ("" when it shares nothing).
 * @param {string} page
 * @param {string} capture
 * @param {number} views
 */
export const beat = (page, capture, views) => ({
  kind: /** @type {const} */ ("beat"), page, capture, views,
});

/** @param {string} capture the id of the capture that starts */
export const start = (capture) => ({ kind: /** @type {const} */ ("start"), capture });

/**
 * One microphone chunk's header (the PCM16 goes as its buffer).
 * @param {string} capture
 * @param {number} seq from 0 in each capture
 * @param {number} t epoch ms when it left
 */
export const audio = (capture, seq, t) => ({
  kind: /** @type {const} */ ("audio"), capture, seq, t,
});

/**
 * One screen frame's header (the JPEG goes as its buffer).
 * @param {string} capture
 * @param {number} seq
 * @param {number} t epoch ms
 * @param {number} width px
 * @param {number} height px
 * @param {string} reason why the frame policy sent it
 */
export const frame = (capture, seq, t, width, height, reason) => ({
  kind: /** @type {const} */ ("frame"), capture, seq, t, width, height, reason,
});

/**
 * End the session (and the capture, when given).
 * @param {string} reason
 * @param {string} [capture]
 */
export const stop = (reason, capture) =>
  capture === undefined
    ? { kind: /** @type {const} */ ("stop"), reason }
    : { kind: /** @type {const} */ ("stop"), reason, capture };

/**
 * A device came or went while live: "screen_ended" (the browser's own Stop sharing),
 * "screen_shared" (a screen shared again), "mic_ended" (unplugged), "mic_changed" (picked).
 * @param {"screen_ended" | "screen_shared" | "mic_ended" | "mic_changed"} what
 * @param {string} label the device's name where it has one
 * @param {string} capture
 */
export const device = (what, label, capture) => ({
  kind: /** @type {const} */ ("device"), what, label, capture,
});

/** @param {string} message a sentence with the fix */
export const clientError = (message) => ({ kind: /** @type {const} */ ("client_error"), message });

/**
 * The player's counters.
 * @param {number} playedMs
 * @param {number} queuedMs
 * @param {number} underruns
 * @param {number} droppedChunks
 */
export const playback = (playedMs, queuedMs, underruns, droppedChunks) => ({
  kind: /** @type {const} */ ("playback"),
  played_ms: playedMs,
  queued_ms: queuedMs,
  underruns,
  dropped_chunks: droppedChunks,
});

/** @param {string} value typed text, cut to LIMITS.max_text_chars */
export const text = (value) => ({
  kind: /** @type {const} */ ("text"), text: value.slice(0, LIMITS.max_text_chars),
});

/**
 * The user's answer to a tool call that asked.
 * @param {string} id
 * @param {boolean} allow
 */
export const confirm = (id, allow) => ({ kind: /** @type {const} */ ("confirm"), id, allow });

/**
 * The traits the page may change, each by a `set` message (PAGE_TRAITS in Python). The page
 * never writes a trait through the model's state sync (`save_changes`): the kernel writes it,
 * and the model follows.
 */
export const PAGE_TRAITS = Object.freeze([
  "system_instruction",
  "video_paused",
  "volume",
  "muted",
]);

/**
 * The user changed a trait the page may change.
 * @param {"system_instruction" | "video_paused" | "volume" | "muted"} name
 * @param {string | boolean | number} value a number only for `volume` (0..1)
 */
export const setTrait = (name, value) => ({ kind: /** @type {const} */ ("set"), name, value });

/** @param {FrameCounts} counts */
export const frameStats = (counts) => ({ kind: /** @type {const} */ ("frame_stats"), ...counts });

/** @returns {string} a random id for one capture (start to stop), or for a page */
export function newCaptureId() {
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
