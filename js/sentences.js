// @ts-check
/**
 * What the page tells the user: notices, stop reasons, and why sharing cannot start or
 * failed, each with the fix. Internal module.
 */

export const BUSY_NOTICE =
  "Paused: the kernel is busy running a cell; the conversation resumes when it finishes.";
export const SCREEN_ENDED_NOTICE =
  "Screen sharing ended; the voice conversation continues. Click “Share a screen” to share " +
  "one again, or Stop to end it.";
export const SCREEN_AGAIN_NOTICE = "Sharing the new screen; the conversation goes on.";
export const MIC_ENDED_NOTICE =
  "The microphone stopped (unplugged?); the assistant still sees your screen and reads what " +
  "you type. Pick a microphone to talk again, or Stop to end it.";

/** @param {string[]} labels microphones that came meanwhile (none: the plain notice) */
export function micEnded(labels) {
  if (labels.length === 0) return MIC_ENDED_NOTICE;
  const added = micAdded(labels);
  return `The microphone stopped (unplugged?); ${added[0].toLowerCase()}${added.slice(1)} ` +
    "The assistant still sees your screen and reads what you type meanwhile.";
}
export const NO_MIC_NOTICE =
  "No microphone is connected: plug one in and pick it; typing works meanwhile.";

/** @param {string[]} labels microphones that were just connected */
export function micAdded(labels) {
  const names = labels.map((l) => `“${l}”`).join(", ");
  return `${labels.length > 1 ? "New microphones" : "A new microphone"} connected: ${names}. ` +
    "Pick it in the microphone menu to talk through it.";
}

/** @param {string} label what the browser calls the system's default microphone now */
export function defaultMicChanged(label) {
  return `The system's default microphone is now “${label}”. Pick it in the microphone menu ` +
    "to talk through it.";
}

/** @param {string} label the microphone now in use */
export function micInUse(label) {
  return `Listening through “${label}”.`;
}
export const EMPTY_TRANSCRIPT =
  "Click Share, then talk: the assistant sees your screen and answers aloud.";
export const NOT_SHARED_NOTICE =
  "A session is running, but this page shares nothing: click Share to send your screen and " +
  "voice from here, or Stop to end the session.";

export const USER_STOP_REASON = "Stopped by the user.";
export const ALL_ENDED_REASON = "Every shared track ended.";
export const NO_VIEW_REASON = "No view of the assistant is left in the page, so sharing stopped.";
export const MOVED_REASON = "Sharing moved to another view of this assistant.";
export const PAGE_CLOSED_REASON = "The page was closed, so sharing stopped.";
export const CLOSED_REASON = "The widget was closed.";

/**
 * @param {number} length characters in the instruction box
 * @param {number} limit most characters the kernel takes from it
 */
export function instructionTooLong(length, limit) {
  return `Too long to apply: ${length.toLocaleString("en-US")} characters, the most is ` +
    `${limit.toLocaleString("en-US")}. Set a longer one from Python.`;
}

/**
 * What js/preflight.js does not cover: the AudioWorklet the voice needs.
 * @param {Window & typeof globalThis} [realm] the window that would capture
 * @returns {string} why it cannot, or "" if it can
 */
export function unsupportedReason(realm = window) {
  if (typeof realm.AudioContext === "undefined" || !("audioWorklet" in realm.AudioContext.prototype)) {
    return (
      "This browser has no AudioWorklet, which the voice needs; " +
      "use a recent Chrome, Edge, Firefox or Safari."
    );
  }
  return "";
}

/** The Share button's label: capture here, or through the capture window. */
export const SHARE_HERE = "Share screen & mic";
export const SHARE_FROM_WINDOW = "Share from a new window";
/** The cell, while a capture window captures. */
export const IN_WINDOW_NOTICE =
  "Sharing from the capture window: it captures and plays the voice; Stop here or there.";
/** The capture window was closed while it captured. */
export const WINDOW_CLOSED_REASON = "The capture window was closed.";
/** A refusal in a frame whose policy the browser cannot read. */
export const FRAME_MAY_BLOCK =
  "Sharing was refused or cancelled, and this notebook runs in a frame that may not allow " +
  "screen sharing or the microphone: click “Share from a new window”, which shares from a " +
  "small window of its own.";
/** The frame may not open the capture window either. */
export const NO_WINDOW =
  "The capture window could not open (this frame, or a popup blocker, does not allow it): " +
  "allow popups for this page, or open the notebook in its own browser tab.";

/** @typedef {"screen"|"microphone"|"audio"} Stage what was being set up */

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
  "audio:NotAllowedError":
    "The browser would not start audio for this page (its autoplay or sound setting): allow " +
    "sound for this site and click Share again.",
  "microphone:NotReadableError":
    "The microphone is in use by another application or could not start: close the other " +
    "application and click Share again.",
};

/** @type {Record<string, string>} the same, for a screen or microphone picked again live */
const LIVE_FAILURE_SENTENCES = {
  "screen:NotAllowedError":
    "No screen was shared (the picker was cancelled or blocked); the conversation goes on. " +
    "Click “Share a screen” to pick one.",
  "microphone:NotAllowedError":
    "Microphone access was denied: allow the microphone for this page (the icon in the " +
    "address bar), then pick it again.",
  "microphone:NotFoundError": "That microphone is not connected: plug it in, or pick another.",
  "microphone:OverconstrainedError":
    "That microphone is not connected: plug it in, or pick another.",
  "microphone:NotReadableError":
    "That microphone is in use by another application or could not start: close the other " +
    "application, or pick another.",
};

/**
 * Why a screen or microphone picked again while live could not be used, with the fix (the
 * conversation goes on: the fix is never Share).
 * @param {"screen"|"microphone"} what
 * @param {unknown} error
 */
export function describeLiveFailure(what, error) {
  const known = error instanceof Error || error instanceof DOMException;
  const name = known ? error.name : "";
  const key = `${what}:${name}`;
  if (key in LIVE_FAILURE_SENTENCES) return LIVE_FAILURE_SENTENCES[key];
  const label = what === "screen" ? "Sharing a screen" : "The microphone";
  const detail = known ? error.message : String(error);
  return `${label} failed (${name || "error"}: ${detail}); the conversation goes on.`;
}

/**
 * A human sentence, with the fix, for a failed getDisplayMedia/getUserMedia/audio setup.
 * @param {Stage} what
 * @param {unknown} error
 */
export function describeFailure(what, error) {
  const known = error instanceof Error || error instanceof DOMException;
  const name = known ? error.name : "";
  const detail = known ? error.message : String(error);
  const key = `${what}:${name}`;
  if (key in FAILURE_SENTENCES) return FAILURE_SENTENCES[key];
  const label = { screen: "Screen sharing", microphone: "The microphone", audio: "Audio" }[what];
  return `${label} failed (${name || "error"}: ${detail}); click Share to try again.`;
}
