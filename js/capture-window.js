// @ts-check
/**
 * The capture window: where the widget's frame may not capture (its permissions policy
 * denies `display-capture` or `microphone`, as VS Code's and Colab's output frames do) but may
 * open a window, a small same-origin window of its own does the capture and the playback.
 * It is an `about:blank` window the widget writes into: the screen, the microphone and the
 * audio contexts are asked for there (a top-level window, under no frame's policy, and the
 * click that asks is the user's in it), while everything else (the frame loop, the messages to
 * the kernel, the transcript) stays with the widget in the notebook. So the session and every
 * Python API work as they do in JupyterLab.
 *
 * Closing the window stops the sharing; Stop in the cell closes it; and if the notebook's
 * page goes, a watch in the window's own realm closes it (nothing it captured outlives the
 * page that sends it). Internal module.
 */

/** The window's size (CSS px). */
const WIDTH = 420;
const HEIGHT = 260;
/** How often the notebook checks that the window is still open, and the window that the
 * notebook still is (ms). */
const WATCH_MS = 500;

/** What the window watches in its own realm: its opener gone, it closes itself. */
const OPENER_WATCH =
  "setInterval(() => { let gone = true; try { gone = !opener || opener.closed; } catch {} " +
  `if (gone) close(); }, ${WATCH_MS});`;

const STYLE = `
  body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }
  h1 { font-size: 15px; margin: 0 0 8px; }
  p { margin: 6px 0; }
  button { font: inherit; padding: 6px 14px; margin: 8px 8px 0 0; border-radius: 4px;
    border: 1px solid #888; background: #fff; cursor: pointer; }
  button.ssw-window-share { background: #1976d2; border-color: #1976d2; color: #fff; }
  button:disabled { opacity: 0.5; cursor: default; }
  .ssw-window-status[data-live="true"] { color: #2e7d32; font-weight: 600; }
`;

/**
 * What the window needs from the sharing it serves.
 * @typedef {object} CaptureWindowHost
 * @property {(realm: import("./capture.js").Realm) => void} share the user clicked Share in the window: start
 *   there (synchronously up to getDisplayMedia, for the click's activation)
 * @property {() => void} stop the user clicked Stop in the window
 * @property {() => void} closed the window was closed (by the user, or it went)
 */

export class CaptureWindow {
  /**
   * @param {CaptureWindowHost} host
   * @param {string} name the window's name: one window per widget model
   */
  constructor(host, name) {
    this.host = host;
    this.name = name;
    /** @type {import("./capture.js").Realm | null} */
    this.win = null;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.watch = undefined;
    /** @type {{status: HTMLElement, share: HTMLButtonElement, stop: HTMLButtonElement} | null} */
    this.ui = null;
  }

  /** @returns {boolean} the window is open */
  get open() {
    return !!this.win && !this.win.closed;
  }

  /**
   * Open the window (or bring it forward); must run in a click.
   * @returns {boolean} false when this frame may not open windows (a popup blocker or a
   *   sandbox without `allow-popups`)
   */
  show() {
    if (this.open) {
      this.win?.focus();
      return true;
    }
    const features = `popup,width=${WIDTH},height=${HEIGHT}`;
    let win = null;
    try {
      win = /** @type {import("./capture.js").Realm | null} */ (
        window.open("", this.name, features)
      );
    } catch {
      win = null;
    }
    if (!win) return false;
    this.win = win;
    try {
      this.build(win);
    } catch (error) {
      // A page policy (Trusted Types, say) that will not let the window be written.
      console.warn("[screenshare-widget] the capture window could not be built:", error);
      this.close();
      return false;
    }
    clearInterval(this.watch);
    this.watch = setInterval(() => {
      if (!this.open) this.onClosed();
    }, WATCH_MS);
    win.addEventListener("pagehide", () => this.onClosed());
    return true;
  }

  /** @param {import("./capture.js").Realm} win write the window's page: a title, the status, Share and Stop */
  build(win) {
    const doc = win.document;
    doc.title = "Screen share assistant";
    const style = doc.createElement("style");
    style.textContent = STYLE;
    doc.head.append(style);
    const watch = doc.createElement("script");
    watch.textContent = OPENER_WATCH;
    doc.head.append(watch);
    const title = doc.createElement("h1");
    title.textContent = "Screen share assistant";
    const status = doc.createElement("p");
    status.className = "ssw-window-status";
    const share = doc.createElement("button");
    share.className = "ssw-window-share";
    share.textContent = "Share screen & mic";
    const stop = doc.createElement("button");
    stop.className = "ssw-window-stop";
    stop.textContent = "Stop";
    const note = doc.createElement("p");
    note.textContent =
      "The notebook's frame may not capture, so this window does. Keep it open while you " +
      "talk (it may go behind other windows); closing it stops sharing.";
    doc.body.replaceChildren(title, status, share, stop, note);
    share.addEventListener("click", () => this.host.share(win));
    stop.addEventListener("click", () => this.host.stop());
    this.ui = { status, share, stop };
    this.update("idle");
  }

  /**
   * Show the sharing's phase in the window.
   * @param {"idle" | "starting" | "live"} phase
   * @param {string} [problem] why the last Share failed
   */
  update(phase, problem = "") {
    const ui = this.ui;
    if (!ui || !this.open) return;
    ui.status.textContent =
      problem ||
      { idle: "Click Share to pick a screen.", starting: "Starting…", live: "Live: sharing." }[
        phase
      ];
    ui.status.dataset.live = String(phase === "live");
    ui.share.disabled = phase !== "idle";
    ui.stop.disabled = phase === "idle";
  }

  onClosed() {
    if (!this.win) return;
    this.forget();
    this.host.closed();
  }

  forget() {
    clearInterval(this.watch);
    this.watch = undefined;
    this.win = null;
    this.ui = null;
  }

  /** Close the window (its tracks and audio contexts go with it). Idempotent. */
  close() {
    const win = this.win;
    this.forget();
    try {
      win?.close();
    } catch {
      // already gone
    }
  }
}
