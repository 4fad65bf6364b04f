// @ts-check
/**
 * Why capture cannot happen here, worked out before any media is asked for: an insecure
 * page, a browser without the APIs, a frame whose permissions policy denies `display-capture`
 * or `microphone` to the widget, or a host known to block them (VS Code's webviews). Each
 * cause comes with what works instead. `readPlace` reads the page; `blocker` is pure, so the
 * sentences are tested in node. Internal module.
 */

/**
 * What the page can tell about where it runs.
 * @typedef {object} Place
 * @property {boolean} secure a secure context (https, localhost, 127.0.0.1)
 * @property {string} origin the page's origin, e.g. "http://192.168.1.5:8888"
 * @property {boolean} displayMedia navigator.mediaDevices.getDisplayMedia exists
 * @property {boolean} userMedia navigator.mediaDevices.getUserMedia exists
 * @property {boolean | null} screenAllowed the frame's permissions policy allows
 *   display-capture (null: the browser cannot say)
 * @property {boolean | null} micAllowed the same for microphone
 * @property {boolean} framed the widget runs in a frame, not the top page
 * @property {Host} host the notebook host, when one is known to block capture
 */

/** @typedef {"vscode" | "colab" | ""} Host */

/**
 * What blocks capture here, and the way that works.
 * @typedef {object} Blocker
 * @property {"insecure" | "no-api" | "host" | "policy"} cause
 * @property {string} sentence what the cell says: the cause, then the way
 * @property {"window" | "none"} way a capture window opened from here, or nothing the
 *   widget can offer
 */

/**
 * @param {any} policy document.permissionsPolicy or document.featurePolicy
 * @param {string} feature
 * @returns {boolean | null}
 */
function allows(policy, feature) {
  if (!policy || typeof policy.allowsFeature !== "function") return null;
  try {
    return Boolean(policy.allowsFeature(feature));
  } catch {
    return null;
  }
}

/**
 * @param {Window} win
 * @returns {Host}
 */
function hostOf(win) {
  const w = /** @type {any} */ (win);
  if (win.location.protocol === "vscode-webview:" || typeof w.acquireVsCodeApi === "function") {
    return "vscode";
  }
  if (w.google?.colab || /\.googleusercontent\.com$/.test(win.location.hostname)) return "colab";
  return "";
}

/**
 * @param {Window} [win]
 * @returns {Place}
 */
export function readPlace(win = window) {
  const doc = /** @type {any} */ (win.document);
  const policy = doc.permissionsPolicy ?? doc.featurePolicy;
  const media = win.navigator.mediaDevices;
  let framed = true;
  try {
    framed = win.self !== win.top;
  } catch {
    framed = true; // a cross-origin top: framed
  }
  return {
    secure: win.isSecureContext,
    origin: win.location.origin,
    displayMedia: typeof media?.getDisplayMedia === "function",
    userMedia: typeof media?.getUserMedia === "function",
    screenAllowed: allows(policy, "display-capture"),
    micAllowed: allows(policy, "microphone"),
    framed,
    host: hostOf(win),
  };
}

const HOST_NAMES = { vscode: "VS Code's notebook outputs", colab: "Colab's output frame" };

/**
 * @param {Place} place
 * @returns {Blocker | null} what blocks capture here, or null when nothing known does
 */
export function blocker(place) {
  if (!place.secure) {
    return {
      cause: "insecure",
      sentence:
        `This page (${place.origin}) is not secure, and browsers share the screen and the ` +
        "microphone only with secure pages: open the notebook at http://localhost or " +
        "http://127.0.0.1 on the machine it runs on, or over https.",
      way: "none",
    };
  }
  if (place.host === "vscode") {
    return {
      cause: "host",
      sentence:
        `${HOST_NAMES.vscode} cannot use the microphone or share the screen ` +
        "(microsoft/vscode#119127): open this notebook in JupyterLab or Notebook 7 in a " +
        "browser (run `jupyter lab` in a terminal).",
      way: "none",
    };
  }
  const denied = [
    place.screenAllowed === false ? "screen sharing" : "",
    place.micAllowed === false ? "the microphone" : "",
  ].filter(Boolean);
  if (denied.length > 0) {
    const where = place.host ? HOST_NAMES[place.host] : "The frame this notebook runs in";
    return {
      cause: "policy",
      sentence:
        `${where} does not allow ${denied.join(" or ")} (its permissions policy): ` +
        "click “Share from a new window”, which shares from a small window of its own.",
      way: "window",
    };
  }
  if (!place.displayMedia || !place.userMedia) {
    const missing = !place.displayMedia ? "share a screen" : "use a microphone";
    return {
      cause: "no-api",
      sentence:
        `This browser cannot ${missing} from a web page: open the notebook in desktop ` +
        "Chrome, Edge, Firefox or Safari.",
      way: "none",
    };
  }
  return null;
}
