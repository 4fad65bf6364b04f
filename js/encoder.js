// @ts-check
/**
 * JPEG encoding of screen pictures. A VideoFrame is encoded in a worker (encoder.worker.js):
 * a hidden tab's own canvas encodes wait on its throttled tasks, up to a second each. A
 * `<video>` picture, or any picture where workers are refused (a strict content security
 * policy), fail or do not answer, is encoded on the page. Internal module.
 */

import ENCODER_WORKER_SOURCE from "./workers/encoder.worker.js?source";

/** How long the page waits for the worker's JPEG before it encodes one itself (ms). */
const WORKER_WAIT_MS = 3_000;

export class JpegEncoder {
  constructor() {
    /** @type {Worker | null} */
    this.worker = null;
    this.url = "";
    this.refused = false; // the worker could not start or failed: encode on the page
    this.nextId = 0;
    /** @type {Map<number, (blob: Blob | null) => void>} */
    this.waiting = new Map();
    this.canvas = document.createElement("canvas");
  }

  /**
   * The picture as a JPEG of `width` x `height`. The picture is drawn (or copied) before this
   * returns its promise, so its source may close it afterwards.
   * @param {CanvasImageSource} image
   * @param {number} width
   * @param {number} height
   * @param {number} quality 0..1
   * @returns {Promise<Blob | null>}
   */
  encode(image, width, height, quality) {
    const worker = typeof VideoFrame !== "undefined" && image instanceof VideoFrame
      ? this.started()
      : null;
    if (worker) {
      const frame = /** @type {VideoFrame} */ (image).clone();
      const id = ++this.nextId;
      const answer = new Promise((resolve) => this.waiting.set(id, resolve));
      worker.postMessage({ id, frame, width, height, quality }, [frame]);
      return this.answer(id, answer);
    }
    return this.onPage(image, width, height, quality);
  }

  /**
   * The worker's answer; if it does not come within WORKER_WAIT_MS, null (this picture is
   * not sent; the next check's is encoded on the page, the worker no longer used).
   * @param {number} id
   * @param {Promise<Blob | null>} answer
   * @returns {Promise<Blob | null>}
   */
  answer(id, answer) {
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve("late"), WORKER_WAIT_MS);
    });
    return Promise.race([answer, late]).then((blob) => {
      clearTimeout(timer);
      this.waiting.delete(id);
      if (blob !== "late") return /** @type {Blob | null} */ (blob);
      console.warn("[screenshare-widget] the JPEG worker does not answer: encoding on the page");
      this.refuse();
      return null;
    });
  }

  /** Start the worker now where frames will come as VideoFrames, so that the first frame
   * does not wait for it to start. */
  warm() {
    if (typeof VideoFrame !== "undefined") this.started();
  }

  /** @returns {Worker | null} the worker, started on first use; null where it is refused */
  started() {
    if (this.refused) return null;
    if (this.worker) return this.worker;
    try {
      this.url = URL.createObjectURL(new Blob([ENCODER_WORKER_SOURCE], { type: "text/javascript" }));
      const worker = new Worker(this.url);
      worker.onmessage = ({ data }) => {
        if (data.error) console.warn("[screenshare-widget] JPEG worker:", data.error);
        this.waiting.get(data.id)?.(data.blob ?? null);
        this.waiting.delete(data.id);
      };
      worker.onerror = () => this.refuse();
      this.worker = worker;
    } catch {
      this.refuse();
    }
    return this.worker;
  }

  /** The worker failed: answer what waits with null (the page encodes it) and stop using it. */
  refuse() {
    this.refused = true;
    this.close();
  }

  /**
   * @param {CanvasImageSource} image
   * @param {number} width
   * @param {number} height
   * @param {number} quality
   * @returns {Promise<Blob | null>}
   */
  onPage(image, width, height, quality) {
    const canvas = this.canvas;
    canvas.width = width;
    canvas.height = height;
    canvas.getContext("2d")?.drawImage(image, 0, 0, width, height);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
  }

  /** Stop the worker; what waits for it is encoded on the page. Idempotent. */
  close() {
    this.worker?.terminate();
    this.worker = null;
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = "";
    for (const resolve of this.waiting.values()) resolve(null);
    this.waiting.clear();
  }
}
