// @ts-check
/** The one notice line a model's views show (transient or sticky). Internal module. */

/** How long a transient notice stays visible (ms). */
export const NOTICE_MS = 5_000;

export class Notice {
  /** @param {() => void} onChange the text changed */
  constructor(onChange) {
    this.onChange = onChange;
    this.text = "";
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
  }

  /**
   * @param {string} text
   * @param {{sticky?: boolean}} [options] sticky notices stay until the next Share
   */
  show(text, { sticky = false } = {}) {
    clearTimeout(this.timer);
    this.text = text;
    if (!sticky) {
      this.timer = setTimeout(() => {
        this.text = "";
        this.onChange();
      }, NOTICE_MS);
    }
    this.onChange();
  }

  /** Remove the notice without telling the views (the caller does). */
  clear() {
    clearTimeout(this.timer);
    this.text = "";
  }
}
