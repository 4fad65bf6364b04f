// @ts-check
/**
 * The JPEG encoder's worker: it draws a VideoFrame it is given at the size asked and answers
 * with the JPEG. Off the page's main thread, where a hidden tab's canvas encodes can wait a
 * second or more for the page's throttled tasks. Each message: {id, frame, width, height,
 * quality}; each answer: {id, blob} or {id, error}. The frame is closed here.
 */

/** @type {OffscreenCanvas | null} */
let canvas = null;

self.onmessage = async (event) => {
  const { id, frame, width, height, quality } = event.data;
  try {
    if (!canvas) canvas = new OffscreenCanvas(width, height);
    canvas.width = width;
    canvas.height = height;
    const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext("2d"));
    ctx.drawImage(frame, 0, 0, width, height);
    frame.close();
    const blob = await canvas.convertToBlob({ type: "image/jpeg", quality });
    self.postMessage({ id, blob });
  } catch (error) {
    frame?.close?.();
    self.postMessage({ id, error: String(error) });
  }
};
