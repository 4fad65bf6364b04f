// The frame-policy simulation bench/frames.py runs in chromium (see its docstring).
// Evaluated as one arrow function: ([widgetSource, minutes]) => results.
async ([source, minutes]) => {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const w = await import(url);
  const CHECK_MS = 250, W = 1280, H = 720;
  const screen = new OffscreenCanvas(W, H), ctx = screen.getContext("2d");
  const thumb = new OffscreenCanvas(w.THUMB_WIDTH, w.THUMB_HEIGHT);
  const tctx = thumb.getContext("2d", { willReadFrequently: true });
  const frame = new OffscreenCanvas(1024, 576), fctx = frame.getContext("2d");

  const lines = (offset) => {
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, W, H);
    ctx.fillStyle = "#202020"; ctx.font = "22px sans-serif";
    // Ragged lines, as in real text: each line's length depends on its number.
    const words = "the quick brown fox reads a long notebook page of data and code".split(" ");
    for (let i = 0; i < 26; i++) {
      const n = i + offset;
      const count = 2 + ((n * 7) % 11);
      const text = Array.from({ length: count }, (_, k) => words[(n + k) % words.length]);
      ctx.fillText(`${n}. ${text.join(" ")}`, 40, 40 + i * 26);
    }
  };
  const draw = {
    // A still page; only a text cursor blinks (500 ms on, 500 ms off).
    static: (t) => { lines(0); if (Math.floor(t / 500) % 2) { ctx.fillStyle = "#000"; ctx.fillRect(600, 300, 2, 22); } },
    // Read for about 8 s, then scroll three lines (at times that do not fall on a check).
    reading: (t) => lines(3 * scrolls(t).length),
    // Everything moves all the time.
    video: (t) => {
      const g = ctx.createLinearGradient(0, 0, W, H);
      g.addColorStop(0, `hsl(${(t / 20) % 360}, 70%, 50%)`);
      g.addColorStop(1, `hsl(${(t / 13 + 180) % 360}, 70%, 40%)`);
      ctx.fillStyle = g; ctx.fillRect(0, 0, W, H);
      for (let i = 0; i < 12; i++) {
        ctx.fillStyle = `hsl(${(i * 30 + t / 7) % 360}, 80%, 60%)`;
        ctx.beginPath();
        ctx.arc((t / 3 + i * 200) % W, H / 2 + Math.sin(t / 400 + i) * 250, 60, 0, 2 * Math.PI);
        ctx.fill();
      }
    },
  };
  const scrollAt = (k) => k * 8000 + ((k * 97) % CHECK_MS);
  const scrolls = (t) => { const c = []; for (let k = 1; scrollAt(k) <= t; k++) c.push(scrollAt(k)); return c; };
  const changes = { static: () => [], reading: (end) => scrolls(end - 1), video: () => [] };
  const jpegBytes = async () => {
    fctx.drawImage(screen, 0, 0, 1024, 576);
    const blob = await frame.convertToBlob({ type: "image/jpeg", quality: 0.7 });
    return blob.size;
  };

  const end = minutes * 60000;
  const out = {};
  for (const name of Object.keys(draw)) {
    const policy = new w.FramePolicy();
    const ours = { frames: 0, bytes: 0, sends: [] };
    const fixed = { frames: 0, bytes: 0 };
    const tutorial = { frames: 0, bytes: 0 };
    let tutorialFrame = 0, lastFixed = -Infinity, lastCapture = -Infinity, nextSpeech = 30000;
    for (let t = 0; t < end; t += CHECK_MS) {
      draw[name](t);
      tctx.drawImage(screen, 0, 0, w.THUMB_WIDTH, w.THUMB_HEIGHT);
      const luma = w.luma(tctx.getImageData(0, 0, w.THUMB_WIDTH, w.THUMB_HEIGHT).data);
      if (t >= nextSpeech) { policy.speechStarted(); nextSpeech += 30000; }
      const reason = policy.decide(t, luma, { minChange: 0.01, heartbeatMs: 10000, intervalMs: 1000, paused: false });
      if (reason) {
        policy.sent(t, luma, reason);
        ours.frames++; ours.bytes += await jpegBytes(); ours.sends.push([t, reason]);
      }
      if (t - lastFixed >= 1000) { lastFixed = t; fixed.frames++; fixed.bytes += await jpegBytes(); }
      if (t - lastCapture >= 3000) { lastCapture = t; tutorialFrame = await jpegBytes(); }
      // 25 audio messages a second, each with the latest captured frame attached.
      tutorial.frames += CHECK_MS / 40; tutorial.bytes += tutorialFrame * (CHECK_MS / 40);
    }
    const latencies = changes[name](end).map((c) => {
      const next = ours.sends.find(([t]) => t >= c);
      return next ? next[0] - c : null;
    }).filter((x) => x !== null);
    const reasons = {};
    for (const [, r] of ours.sends) reasons[r] = (reasons[r] || 0) + 1;
    out[name] = { ours: { frames: ours.frames, bytes: ours.bytes, reasons }, fixed, tutorial,
                  change_to_send_ms: latencies, counts: policy.counts };
  }
  return out;
}
