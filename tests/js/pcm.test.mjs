// The sample conversions, the resampler's filter, exact buffers and the chunk fingerprint.
import assert from "node:assert/strict";
import { test } from "node:test";
import vm from "node:vm";

import {
  designLowpass, exactBuffer, floatToPcm16, pcm16ToFloat, pcmHash, resamplerTaps, rmsToLevel,
  sampleToPcm16,
} from "../../js/pcm.js";

test("floats are clamped to [-1, 1] before PCM16, and NaN is silence", () => {
  assert.deepEqual(
    Array.from(floatToPcm16(new Float32Array([0, 1, -1, 2, -2, 0.5, NaN, -0.5]))),
    [0, 32767, -32768, 32767, -32768, 16384, 0, -16384],
  );
  assert.equal(sampleToPcm16(Infinity), 32767);
  assert.equal(sampleToPcm16(-Infinity), -32768);
});

test("PCM16 reads little-endian, honours byteOffset at an odd offset, ignores a last odd byte", () => {
  const bytes = new Uint8Array([9, 0x00, 0x40, 0x00, 0xc0, 0xff, 0x7f, 1]);
  assert.deepEqual(Array.from(pcm16ToFloat(new DataView(bytes.buffer, 1, 6))), [
    0.5, -0.5, 32767 / 32768,
  ]);
  const aligned = new Uint8Array([0, 0, 0x00, 0x80, 0x01]);
  assert.deepEqual(Array.from(pcm16ToFloat(new DataView(aligned.buffer, 2, 3))), [-1]);
  assert.deepEqual(Array.from(pcm16ToFloat(new Int16Array([16384]).buffer)), [0.5]);
});

// Half a step of rounding, plus up to one step from encoding positives by 32767 and decoding by 32768.
test("a round trip float -> PCM16 -> float is within one and a half steps", () => {
  const x = Float32Array.from({ length: 101 }, (_, i) => -1 + i / 50);
  const back = pcm16ToFloat(floatToPcm16(x).buffer);
  x.forEach((v, i) => assert.ok(Math.abs(back[i] - v) <= 1.5 / 32767, `${v} -> ${back[i]}`));
});

test("exactBuffer holds only the view's bytes, and passes whole buffers through", () => {
  const whole = new ArrayBuffer(8);
  new Uint8Array(whole).set([1, 2, 3, 4, 5, 6, 7, 8]);
  const part = exactBuffer(new Uint8Array(whole, 2, 4));
  assert.ok(part instanceof ArrayBuffer);
  assert.deepEqual(Array.from(new Uint8Array(part)), [3, 4, 5, 6]);
  assert.equal(exactBuffer(whole), whole);
  const full = new Uint8Array(whole);
  assert.equal(exactBuffer(full), whole);
});

test("exactBuffer copies another realm's buffers into this one (a capture window's audio)", () => {
  const foreign = vm.runInNewContext("new Uint8Array([9, 8, 7, 6]).buffer");
  assert.ok(!(foreign instanceof ArrayBuffer));
  const mine = exactBuffer(foreign);
  assert.ok(mine instanceof ArrayBuffer);
  assert.deepEqual(Array.from(new Uint8Array(mine)), [9, 8, 7, 6]);
  const view = vm.runInNewContext("new Uint8Array([1, 2, 3, 4, 5]).subarray(1, 3)");
  assert.deepEqual(Array.from(new Uint8Array(exactBuffer(view))), [2, 3]);
  assert.ok(exactBuffer(view) instanceof ArrayBuffer);
});

/** |H(f)| of an FIR at `hz` for `rate`. */
function gain(taps, hz, rate) {
  let re = 0;
  let im = 0;
  taps.forEach((c, n) => {
    re += c * Math.cos((2 * Math.PI * hz * n) / rate);
    im -= c * Math.sin((2 * Math.PI * hz * n) / rate);
  });
  return Math.hypot(re, im);
}

test("the anti-alias filter passes speech and removes what would alias at 16 kHz", () => {
  for (const rate of [48000, 44100]) {
    const taps = resamplerTaps(rate);
    assert.ok(taps && taps.length % 2 === 1, "an odd number of taps");
    assert.ok(Math.abs(gain(taps, 0, rate) - 1) < 1e-6);
    for (const hz of [1000, 4000]) assert.ok(Math.abs(gain(taps, hz, rate) - 1) < 0.01, `${hz}`);
    for (const hz of [9000, 12000, 20000]) assert.ok(gain(taps, hz, rate) < 0.01, `${hz}`);
  }
  assert.equal(resamplerTaps(16000), null);
  assert.equal(resamplerTaps(8000), null);
  const lp = designLowpass(7000, 48000, 133);
  assert.ok(Math.abs(lp.reduce((a, b) => a + b, 0) - 1) < 1e-5, "unity gain at DC");
});

test("the meter maps -60..0 dBFS onto 0..1", () => {
  assert.equal(rmsToLevel(0), 0);
  assert.equal(rmsToLevel(NaN), 0);
  assert.equal(rmsToLevel(1), 1);
  assert.equal(rmsToLevel(2), 1);
  assert.ok(Math.abs(rmsToLevel(0.001) - 0) < 1e-9);
  assert.ok(Math.abs(rmsToLevel(10 ** (-30 / 20)) - 0.5) < 1e-9);
});

test("pcmHash follows the formula the benchmarks compute in Python", () => {
  const bytes = Uint8Array.from({ length: 33 }, (_, i) => (i * 37 + 11) % 256);
  let expected = BigInt(bytes.length);
  for (let i = 0, k = 1n; i + 1 < bytes.length; i += 2, k++) {
    const sample = BigInt(bytes[i] | (bytes[i + 1] << 8));
    expected += sample * ((k * 2654435761n) % 2n ** 32n);
  }
  assert.equal(pcmHash(bytes), Number(expected % 2n ** 32n));
  assert.equal(pcmHash(new Uint8Array(0)), 0);
  assert.notEqual(pcmHash(new Uint8Array(10)), pcmHash(new Uint8Array(12)));
});
