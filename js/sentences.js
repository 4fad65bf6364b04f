// @ts-check
/**
 * What the page tells the user: notices, stop reasons, and why sharing cannot start or
 * failed, each with the fix. Internal module.
 */

export const BUSY_NOTICE =
  "Paused: the kernel is busy running a cell; the conversation resumes when it finishes.";
export const SCREEN_ENDED_NOTICE =
  "Screen sharing ended; the voice conversation continues. Click Stop to end it.";
export const MIC_ENDED_NOTICE =
  "The microphone stopped; the assistant still sees your screen. Click Stop to end it.";
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

/** @returns {string} why this page cannot share, or "" if it can */
export function unsupportedReason() {
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
