// @ts-check
/**
 * The latest picture of the shared screen, for the frame loop to draw. Where the browser has
 * `MediaStreamTrackProcessor` (Chromium), it reads the screen track's VideoFrames as they
 * come and keeps only the newest (each older one is closed at once, so the capture never
 * waits on us); a hidden tab keeps getting them, where a `<video>` element that nobody sees
 * may stop painting. Elsewhere a hidden `<video>` plays the stream and is drawn instead.
 * Internal module.
 */

/** @typedef {{image: CanvasImageSource, width: number, height: number}} Picture */

export class ScreenSource {
  constructor() {
    this.video = document.createElement("video");
    this.video.muted = true;
    this.video.playsInline = true;
    /** @type {VideoFrame | null} the newest frame read from the track */
    this.latest = null;
    /** @type {ReadableStreamDefaultReader<VideoFrame> | null} */
    this.reader = null;
    /** @type {MediaStreamTrack | null} the clone the processor reads (stopped on close) */
    this.clone = null;
    /** @type {"frames" | "video" | ""} how the screen is being read */
    this.mode = "";
  }

  /**
   * Start reading `stream`'s video track (what was read before is dropped).
   * @param {MediaStream} stream
   */
  open(stream) {
    this.close();
    const track = stream.getVideoTracks()[0];
    const Processor = /** @type {any} */ (globalThis).MediaStreamTrackProcessor;
    if (track && typeof Processor === "function") {
      try {
        // A clone, so that ending the reader never ends the user's own track.
        this.clone = track.clone();
        const processor = new Processor({ track: this.clone, maxBufferSize: 1 });
        this.reader = processor.readable.getReader();
        this.mode = "frames";
        void this.pump(/** @type {ReadableStreamDefaultReader<VideoFrame>} */ (this.reader));
        return;
      } catch (error) {
        console.warn("[screenshare-widget] reading frames failed, using a video:", error);
        this.close();
      }
    }
    this.mode = "video";
    this.video.srcObject = stream;
    // Not awaited: the loop waits for dimensions, and a refused play() is only logged.
    this.video.play().catch((error) => console.warn("[screenshare-widget] preview:", error));
  }

  /**
   * Keep the newest frame `reader` gives until it ends or another reader replaces it.
   * @param {ReadableStreamDefaultReader<VideoFrame>} reader
   */
  async pump(reader) {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        if (reader !== this.reader) {
          value.close();
          return;
        }
        this.latest?.close();
        this.latest = value;
      }
    } catch {
      // The track ended or the reader was cancelled: nothing more to read.
    }
  }

  /** @returns {Picture | null} the screen now, or null before its first picture */
  picture() {
    const frame = this.latest;
    if (frame && frame.displayWidth > 0 && frame.displayHeight > 0) {
      return { image: frame, width: frame.displayWidth, height: frame.displayHeight };
    }
    const video = this.video;
    if (this.mode === "video" && video.videoWidth > 0 && video.videoHeight > 0) {
      return { image: video, width: video.videoWidth, height: video.videoHeight };
    }
    return null;
  }

  /** Stop reading and release every frame. Idempotent. */
  close() {
    const reader = this.reader;
    this.reader = null;
    reader?.cancel().catch(() => {});
    this.clone?.stop();
    this.clone = null;
    this.latest?.close();
    this.latest = null;
    this.video.pause();
    this.video.srcObject = null;
    this.mode = "";
  }
}
