// @ts-check
/**
 * The cell's Share, where it captures: in the widget's own frame when nothing blocks it, or
 * through the capture window (js/capture-window.js) when the frame's permissions policy
 * denies capture. Closing the window stops the sharing; a sharing that ends closes the
 * window it had gone live in. Internal module.
 */

import { CaptureWindow } from "./capture-window.js";
import { blocker, readPlace } from "./preflight.js";
import * as say from "./sentences.js";

/** @param {unknown} error @returns {boolean} a NotAllowedError: refused, by someone */
function isRefusal(error) {
  return (error instanceof Error || error instanceof DOMException) && error.name === "NotAllowedError";
}

export class WindowShare {
  /**
   * @param {import("./sharing.js").Sharing} sharing
   * @param {string} pageId names the window: one per widget model and page
   * @param {() => boolean} shown a cell shows this widget now
   */
  constructor(sharing, pageId, shown) {
    this.sharing = sharing;
    /** What blocks capture in this frame (null: nothing known does).
     * @type {import("./preflight.js").Blocker | null} */
    this.blocked = blocker(readPlace());
    this.window = new CaptureWindow(
      {
        share: (realm) => {
          // A window whose widget no cell shows, or whose kernel is gone, must not go live.
          if (!shown() || sharing.host.link.gone) this.window.close();
          else void sharing.start(realm);
        },
        stop: () => sharing.stop(say.USER_STOP_REASON),
        closed: () => {
          if (this.inWindow && sharing.phase !== "idle") sharing.stop(say.WINDOW_CLOSED_REASON);
          sharing.capture.realm = sharing.player.realm = window;
        },
      },
      `ssw-capture-${pageId}`,
    );
  }

  /** @returns {boolean} the sharing captures in the capture window */
  get inWindow() {
    return this.sharing.capture.realm !== window;
  }

  /** @returns {boolean} Share opens the capture window */
  get viaWindow() {
    return this.blocked?.way === "window";
  }

  /** The cell's Share click: start here, or open the capture window, or say why neither. */
  share() {
    if (!this.viaWindow) {
      void this.sharing.start(); // synchronous up to getDisplayMedia: keeps the activation
    } else if (!this.window.show()) {
      this.sharing.fail(say.NO_WINDOW);
    }
  }

  /**
   * A Share here was refused. In a frame whose browser cannot say what its policy allows
   * (Firefox and Safari have no `document.featurePolicy`), a refusal without a picker is most
   * likely the frame's: say so, and let Share open the capture window from now on.
   * @param {import("./sentences.js").Stage} stage
   * @param {unknown} error
   * @returns {string} the sentence, or "" to keep the stage's own
   */
  explain(stage, error) {
    if (this.inWindow || stage === "audio" || !isRefusal(error)) return "";
    const place = readPlace();
    if (!place.framed || place.screenAllowed !== null || place.micAllowed !== null) return "";
    this.blocked = {
      cause: "policy",
      sentence: say.FRAME_MAY_BLOCK,
      way: "window",
    };
    return say.FRAME_MAY_BLOCK;
  }

  /** The sharing's state changed: the window shows it. (Any stop closes the window: the
   * controller's `stopped`; a failed Share keeps it, with the failure.) */
  update() {
    const { phase, pageError } = this.sharing;
    if (phase === "idle" && !this.window.open) {
      this.sharing.capture.realm = this.sharing.player.realm = window;
    }
    this.window.update(phase, phase === "idle" ? pageError : "");
  }

  /** The widget model goes: so does its window. */
  dispose() {
    this.window.close();
  }
}
