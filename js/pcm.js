// @ts-check
/**
 * Audio sample formats: float <-> PCM16, the anti-alias filter for the 16 kHz microphone
 * stream, exact buffers for `model.send`, the level meter and the chunk fingerprint the
 * benchmarks use. Internal module; pure (no DOM), so the capture worklet imports it and
 * `node --test` runs it.
 */

/** Microphone PCM16 sent to the kernel (Hz). */
export const INPUT_RATE_HZ = 16_000;
/** Model PCM16 received from the kernel (Hz). */
export const OUTPUT_RATE_HZ = 24_000;
/** Anti-alias low-pass applied before decimating the mic to 16 kHz (Hz). */
export const LOWPASS_CUTOFF_HZ = 7_000;
/** Transition band of that filter (Hz); sets the number of FIR taps. */
export const LOWPASS_TRANSITION_HZ = 2_000;
/** Microphone level shown as an empty meter (dBFS); 0 dBFS fills it. */
export const METER_FLOOR_DB = -60;

/**
 * One float sample to PCM16: clamped to [-1, 1] first, NaN becomes 0.
 * Also runs inside the capture worklet (which imports this module).
 * @param {number} x
 * @returns {number}
 */
export function sampleToPcm16(x) {
  const c = x > 1 ? 1 : x < -1 ? -1 : x;
  return c < 0 ? Math.round(c * 0x8000) : Math.round(c * 0x7fff) || 0;
}

/**
 * @param {Float32Array} samples
 * @returns {Int16Array}
 */
export function floatToPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = sampleToPcm16(samples[i]);
  return out;
}

/**
 * PCM16 little-endian bytes to floats in [-1, 1). Honours `byteOffset` and `byteLength`; an
 * odd offset (not Int16-aligned) is copied first, and a trailing odd byte is ignored.
 * Browsers run on little-endian hosts, so an aligned Int16Array view reads LE directly.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {Float32Array}
 */
export function pcm16ToFloat(data) {
  const view = data instanceof ArrayBuffer ? new DataView(data) : data;
  const count = view.byteLength >> 1;
  const pcm =
    view.byteOffset % 2 === 0
      ? new Int16Array(view.buffer, view.byteOffset, count)
      : new Int16Array(view.buffer.slice(view.byteOffset, view.byteOffset + count * 2));
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = pcm[i] / 0x8000;
  return out;
}

/**
 * A 32-bit fingerprint of PCM16 audio that names a chunk on both ends of a latency trace (the
 * benchmarks compute the same one in Python): the byte length plus, over the samples s_i read
 * as unsigned 16-bit, the sum of s_i * ((i + 1) * 2654435761 mod 2^32), all mod 2^32.
 * @param {Uint8Array} bytes little-endian PCM16
 * @returns {number} an unsigned 32-bit integer
 */
export function pcmHash(bytes) {
  let h = bytes.length >>> 0;
  for (let i = 0, k = 1; i + 1 < bytes.length; i += 2, k++) {
    const sample = bytes[i] | (bytes[i + 1] << 8);
    h = (h + (Math.imul(sample, Math.imul(k, 2654435761) >>> 0) >>> 0)) >>> 0;
  }
  return h;
}

/**
 * The bytes of `data` as an ArrayBuffer of this realm holding exactly them. JupyterLab's
 * websocket serializer sends a view's whole underlying buffer, and takes a buffer from
 * another window (a capture window's worklet posts those) for a plain object, so `model.send`
 * must only get these.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {ArrayBuffer}
 */
export function exactBuffer(data) {
  if (data instanceof ArrayBuffer) return data;
  if (!ArrayBuffer.isView(data)) return new Uint8Array(data).slice().buffer; // another realm's
  const { buffer, byteOffset, byteLength } = data;
  if (buffer instanceof ArrayBuffer && byteOffset === 0 && byteLength === buffer.byteLength) {
    return buffer;
  }
  return new Uint8Array(buffer, byteOffset, byteLength).slice().buffer;
}

/**
 * Windowed-sinc (Blackman) low-pass FIR with unity gain at DC.
 * @param {number} cutoffHz -6 dB point
 * @param {number} sampleRate Hz
 * @param {number} numTaps odd, so the filter has a whole-sample delay
 * @returns {Float32Array}
 */
export function designLowpass(cutoffHz, sampleRate, numTaps) {
  const taps = new Float32Array(numTaps);
  const fc = cutoffHz / sampleRate; // cycles per sample
  const mid = (numTaps - 1) / 2;
  let sum = 0;
  for (let n = 0; n < numTaps; n++) {
    const k = n - mid;
    const sinc = k === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * k) / (Math.PI * k);
    const phase = (2 * Math.PI * n) / (numTaps - 1);
    const blackman = 0.42 - 0.5 * Math.cos(phase) + 0.08 * Math.cos(2 * phase);
    taps[n] = sinc * blackman;
    sum += taps[n];
  }
  for (let n = 0; n < numTaps; n++) taps[n] /= sum;
  return taps;
}

/**
 * The anti-alias filter for decimating `sampleRate` to 16 kHz, or null when the rate is
 * already 16 kHz or lower (nothing to remove).
 * @param {number} sampleRate Hz
 * @returns {Float32Array | null}
 */
export function resamplerTaps(sampleRate) {
  if (sampleRate <= INPUT_RATE_HZ) return null;
  // A Blackman window needs about 5.5 / N of the sample rate for its transition band.
  const count = Math.ceil((5.5 * sampleRate) / LOWPASS_TRANSITION_HZ) | 1;
  return designLowpass(LOWPASS_CUTOFF_HZ, sampleRate, count);
}

/**
 * An RMS amplitude as a meter position in 0..1 (logarithmic, METER_FLOOR_DB..0 dBFS).
 * @param {number} rms
 * @returns {number}
 */
export function rmsToLevel(rms) {
  if (!(rms > 0)) return 0;
  const db = 20 * Math.log10(rms);
  return Math.min(1, Math.max(0, (db - METER_FLOOR_DB) / -METER_FLOOR_DB));
}
