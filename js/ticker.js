// @ts-check
/**
 * Timers that keep time in a background tab. Chrome runs a hidden tab's own timers at most
 * once a second, and after five hidden minutes once a minute; a dedicated worker's timers are
 * not throttled. So the page's periodic work (the beat, the frame checks, the busy check)
 * ticks from a worker's timer, posted to the page; where workers are refused (a strict
 * content security policy), the page's own timer does it. Internal module.
 */

/**
 * Call `tick` every `periodMs` until the returned function is called.
 * @param {number} periodMs
 * @param {() => void} tick
 * @returns {() => void} stops the ticks (idempotent)
 */
export function every(periodMs, tick) {
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
    if (!stopped) timer ??= setInterval(tick, periodMs);
  };
  try {
    const source = `setInterval(() => postMessage(0), ${Math.max(1, Math.round(periodMs))});`;
    url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    worker = new Worker(url);
    worker.onmessage = () => {
      if (!stopped) tick();
    };
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
