"""Audio latency, barge-in and the kernel's cost in a real JupyterLab session.

JupyterLab runs on 127.0.0.1 and Debian's chromium opens a notebook in it headless, with the
fake screen (a moving test pattern) and a fake microphone that asks "What is on my screen
right now?" then pauses :data:`QUESTION_PAUSE_S`, in a loop. The pause is shorter than the
emulator's spoken reply, so each next question barges in on the reply. The notebook shows
the widget, shares, and the conversation runs for the session's length; halfway through, a
cell sleeps for :func:`block_seconds` while the conversation goes on. The page sends
microphone chunks of ``chunk_ms`` (the widget's ``audio_chunk_ms``).

The emulator runs in this process, not in the kernel, so the kernel's CPU and memory are
the product's alone. Times come from both ends on one machine's wall clock: the page's
latency trace (``startTrace``/``takeTrace`` on the widget's test seam) and the emulator's
record of what it received and sent, paired by chunk fingerprint (:mod:`bench.latency`).

- **uplink**: a microphone chunk reaching the page's main thread from the capture worklet
  (and sent to the kernel) to the emulator receiving it;
- **downlink**: the emulator sending a reply's first audio chunk to that chunk's first sample
  leaving the page's audio output (``getOutputTimestamp``; the player's 100 ms pre-roll is
  filled at once by the emulator's first 100 ms chunk); also the transit of every chunk,
  emulator to page;
- **barge-in**: render quanta from the page getting ``interrupted`` to the first quantum
  rendered after the player's flush (and whether it was silent), and the emulator sending
  ``interrupted`` to that quantum leaving the output;
- **kernel**: CPU (percent of one core) and RSS of the kernel process, sampled every
  :data:`SAMPLE_S`, and its CPU by thread (:func:`cpu_by_thread`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from playwright.sync_api import Page, sync_playwright

from screenshare_widget.emulator import LiveEmulator, Realism, Traffic
from screenshare_widget.events import MAX_FRAMES_KEPT
from tests.browser.chromium import launch_options, write_speech_wav
from tests.browser.jupyterlab import (
    JupyterLab,
    assistant_cell,
    cell_output,
    run_cell,
    show_widget,
    wait_cell_done,
    write_notebook,
)

from .latency import CLOCK_SLACK_S, MAX_TRANSIT_S, pair, pcm_hash, summary

SEAM = "globalThis.__screenshareWidget.controllers[0]"
#: Silence after each question (s): shorter than a reply, so every reply is barged in on.
QUESTION_PAUSE_S = 3.0
#: How often the kernel is sampled and the traces are collected (s).
SAMPLE_S = 5.0
#: The start of the session left out of the steady figures (s, at most a tenth of it).
WARM_UP_S = 30.0
#: Longest a cell blocks (s); shorter sessions block a fifth of their length.
MAX_BLOCK_S = 20.0
#: After the busy cell, what it held up drains; the steady figures leave this long out (s).
BLOCK_WAKE_S = 1.0


def block_seconds(duration_s: float) -> float:
    """How long the busy cell sleeps in a session of ``duration_s`` seconds."""
    return max(3.0, min(MAX_BLOCK_S, duration_s / 5))


def kernel_sample(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system, all threads) and RSS (MB) of process ``pid``, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss_mb = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_mb = int(line.split()[1]) / 1024
    return cpu_s, rss_mb


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of process ``pid``, by thread id, from /proc;
    a thread that ended meanwhile is left out."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_group(name: str | None) -> str:
    """What a kernel thread of Python name ``name`` (None: a native thread) does, in a word
    or three."""
    if name is None:
        return "ZMQ I/O and other native threads"
    if name.startswith("screenshare-relay"):
        return "relay (SDK, pumps, sends to the page)"
    if name.startswith("subshell-"):
        return "ipykernel subshell (the page's messages)"
    return {
        "Shell channel": "ipykernel shell channel",
        "IOPub": "ipykernel IOPub",
        "MainThread": "kernel main thread",
    }.get(name, "other Python threads")


def cpu_by_thread(
    names: dict[int, str], before: dict[int, float], after: dict[int, float], seconds: float
) -> dict[str, float]:
    """Percent of one core each group of threads (:func:`thread_group` of its name in
    ``names``) took between two :func:`thread_cpu` samples ``seconds`` apart, largest
    first."""
    groups: dict[str, float] = {}
    for tid, cpu in after.items():
        group = thread_group(names.get(tid))
        groups[group] = groups.get(group, 0.0) + cpu - before.get(tid, 0.0)
    return {
        group: round(100 * cpu / seconds, 2)
        for group, cpu in sorted(groups.items(), key=lambda item: -item[1])
        if cpu > 0
    }


@dataclass
class Collected:
    """Both ends' records, gathered while the session runs (times in seconds)."""

    up: list[tuple[float, int]] = field(default_factory=list)  # page: sent, fingerprint
    down: list[tuple[float, int, float | None]] = field(default_factory=list)  # page
    page_interrupts: list[list[Any]] = field(default_factory=list)
    received: list[tuple[float, int]] = field(default_factory=list)  # emulator: mic audio
    sent: list[tuple[float, int, bool]] = field(default_factory=list)  # emulator: audio, first
    interrupted: list[float] = field(default_factory=list)  # emulator: interrupted sent
    frames: list[tuple[float, int]] = field(default_factory=list)  # emulator: t, bytes
    kernel: list[tuple[float, float, float]] = field(default_factory=list)  # t, cpu s, MB
    threads: list[dict[int, float]] = field(default_factory=list)  # with each kernel row
    thread_names: dict[int, str] = field(default_factory=dict)  # thread id: Python name
    _received_until: float = 0.0
    _sent_until: float = 0.0
    _frames_until: float = 0.0
    _in_reply: bool = False
    spend: dict[str, Any] = field(default_factory=dict)  # the session's tokens, at its end

    def sample_kernel(self, t: float, pid: int) -> None:
        """Sample the kernel's CPU, RSS and CPU by thread at time ``t``."""
        self.kernel.append((t, *kernel_sample(pid)))
        self.threads.append(thread_cpu(pid))

    def take(self, page: Page, recording: Traffic, connection: int, *, last: bool = False) -> None:
        """Move what is final out of the page's trace and the emulator's record (from
        ``connection`` on: a handover continues the session on the next)."""
        trace = page.evaluate(f"{SEAM}.takeTrace({'true' if last else 'false'})")
        self.up += [(t / 1000, int(h)) for t, h in trace["up"]]
        self.down += [
            (t / 1000, int(h), None if out is None else out / 1000) for t, h, out in trace["down"]
        ]
        self.page_interrupts += trace["interrupts"]
        for audio in recording.audio:
            if audio.connection >= connection and audio.t > self._received_until:
                self.received.append((audio.t, pcm_hash(audio.data)))
                self._received_until = audio.t
        for frame in recording.frames:
            if frame.connection >= connection and frame.t > self._frames_until:
                self.frames.append((frame.t, len(frame.data)))
                self._frames_until = frame.t
        for message in recording.sent:
            if message.connection < connection or message.t <= self._sent_until:
                continue
            self._sent_until = message.t
            if message.audio:
                self.sent.append((message.t, pcm_hash(message.audio), not self._in_reply))
                self._in_reply = True
            if "interrupted" in message.keys:
                self.interrupted.append(message.t)
            if "interrupted" in message.keys or "turnComplete" in message.keys:
                self._in_reply = False


#: Prices for the cost figure (USD per million tokens), for illustration only: no prices ship
#: with the package, and the service's prices change.
EXAMPLE_PRICES: Final = {"input:AUDIO": 3.0, "input:IMAGE": 1.0, "input:TEXT": 1.0,
                         "output:AUDIO": 12.0, "output:TEXT": 4.0}  # fmt: skip
#: The cell that reads the session's spend and handovers once it stopped.
SPEND_CELL: Final = (
    "import json\n"
    f"assistant.prices = {EXAMPLE_PRICES!r}\n"
    "s = assistant.spend\n"
    "print(json.dumps({'tokens': s.total_tokens, 'prompt': s.prompt_tokens,"
    " 'response': s.response_tokens, 'by_modality': dict(s.by_modality),"
    " 'cost_usd': s.cost_usd, 'last_turn_tokens': s.last_turn_tokens,"
    " 'reports': len(assistant._relay.usage),"
    " 'model_turns': sum(t.role == 'model' for t in assistant.transcript),"
    " 'handovers': [(h.reason, h.resumed) for h in assistant.handovers]}))"
)


def run(minutes: float, artifacts: Path, chunk_ms: int = 100) -> dict[str, Any]:
    """Run a session of ``minutes`` with microphone chunks of ``chunk_ms`` and return its
    figures (see the module docstring)."""
    duration_s = minutes * 60
    block_s = block_seconds(duration_s)
    with tempfile.TemporaryDirectory(prefix="ssw-bench-") as tmp:
        work = Path(tmp)
        (work / "root").mkdir()
        wav = write_speech_wav(work / "ask.wav", silence_s=QUESTION_PAUSE_S)
        # The emulator behaves like the real service (late pongs, goAway then silence,
        # cumulative usage, barge-ins ended twice ...): the figures are what users would see.
        emulator = LiveEmulator(realism=Realism()).start_in_thread()
        try:
            lab = JupyterLab.start(work / "root", work / "state")
            try:
                with sync_playwright() as driver:
                    browser = driver.chromium.launch(**launch_options(wav))
                    try:
                        context = browser.new_context(viewport={"width": 1280, "height": 800})
                        collected, window = _converse(
                            context.new_page(), lab, emulator, duration_s, block_s, chunk_ms,
                            artifacts,
                        )  # fmt: skip
                    finally:
                        browser.close()
            finally:
                lab.stop()
        finally:
            emulator.stop()
    return {"chunk_ms": chunk_ms, **analyse(collected, window, duration_s)}


def _converse(
    page: Page,
    lab: JupyterLab,
    emulator: LiveEmulator,
    duration_s: float,
    block_s: float,
    chunk_ms: int,
    artifacts: Path,
) -> tuple[Collected, tuple[float, float]]:
    write_notebook(
        lab.root / "bench.ipynb",
        [
            assistant_cell(emulator),
            f"import os\nassistant.audio_chunk_ms = {chunk_ms}\nprint(os.getpid())",
            f"import time\ntime.sleep({block_s:g})",
            "import json, threading\n"
            "print(json.dumps({t.native_id: t.name for t in threading.enumerate()}))",
            SPEND_CELL,
        ],
    )
    show_widget(page, lab, artifacts, "bench.ipynb")
    run_cell(page, 1)
    wait_cell_done(page, 1)
    pid = int(cell_output(page, 1).strip())
    page.click(".ssw-share")
    page.wait_for_selector(".ssw-status[data-status='live']", timeout=60_000)
    page.evaluate(f"{SEAM}.startTrace()")
    recording = emulator.traffic
    connection = recording.connections - 1
    collected = Collected()
    run_cell(page, 3)  # the relay's thread runs now: name the threads
    wait_cell_done(page, 3)
    names = json.loads(cell_output(page, 3).strip())
    collected.thread_names = {int(tid): name for tid, name in names.items()}
    started = time.time()
    collected.sample_kernel(started, pid)
    block_at = started + duration_s / 2
    window = (0.0, 0.0)
    while (now := time.time()) < started + duration_s:
        if not window[1] and now >= block_at:
            run_cell(page, 2)
            begun = time.time()
            wait_cell_done(page, 2, timeout_ms=(block_s + 60) * 1000)
            window = (begun, time.time())
        page.wait_for_timeout(max(0.0, min(SAMPLE_S, started + duration_s - time.time())) * 1000)
        collected.sample_kernel(time.time(), pid)
        collected.take(page, recording, connection)
    page.wait_for_timeout(MAX_TRANSIT_S * 1000)  # let what is in flight land
    collected.take(page, recording, connection, last=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / f"bench-session-{chunk_ms}ms.png"))
    page.click(".ssw-stop")
    page.wait_for_selector(".ssw-status[data-status='idle']", timeout=15_000)
    run_cell(page, 4)
    wait_cell_done(page, 4)
    collected.spend = json.loads(cell_output(page, 4).strip())
    return collected, window


def analyse(c: Collected, window: tuple[float, float], duration_s: float) -> dict[str, Any]:
    """Figures from the collected records; ``window`` is when the busy cell ran (s)."""
    begin = c.kernel[0][0] + min(WARM_UP_S, duration_s / 10) if c.kernel else 0.0

    def blocked(t: float) -> bool:  # the cell is surely sleeping
        return window[0] + 0.5 <= t <= window[1]

    def steady(t: float) -> bool:  # warmed up, and clear of the busy cell and its wake
        return t >= begin and not window[0] <= t <= window[1] + BLOCK_WAKE_S

    # Each take hands over what settled, not always in arrival order.
    c.down.sort(key=lambda row: row[0])
    c.page_interrupts.sort(key=lambda row: float(row[0]))
    up_all = [
        (c.up[i][0], (c.received[j][0] - c.up[i][0]) * 1000) for i, j in pair(c.up, c.received)
    ]
    down_keys = [(t, h) for t, h, _ in c.down]
    down_pairs = pair([(t, h) for t, h, _ in c.sent], down_keys)
    transit = [(c.sent[i][0], (c.down[j][0] - c.sent[i][0]) * 1000) for i, j in down_pairs]
    first = [
        (c.sent[i][0], (out - c.sent[i][0]) * 1000)
        for i, j in down_pairs
        if c.sent[i][2] and (out := c.down[j][2]) is not None
    ]
    barge_ins = _barge_ins(c, steady)

    def split(rows: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        return [ms for t, ms in rows if steady(t)], [ms for t, ms in rows if blocked(t)]

    up, up_busy = split(up_all)
    down_first, down_busy = split(first)
    first_row = next((i for i, row in enumerate(c.kernel) if row[0] >= begin), 0)
    kernel = c.kernel[first_row:]
    steady_s = max(kernel[-1][0] - kernel[0][0], 1e-9)
    frames = sum(1 for t, _ in c.frames if kernel[0][0] <= t <= kernel[-1][0])
    kept = c.frames[-MAX_FRAMES_KEPT:]  # what ``assistant.frames`` holds at the end
    cpu_pct = (
        100 * (kernel[-1][1] - kernel[0][1]) / (kernel[-1][0] - kernel[0][0])
        if len(kernel) > 1
        else None
    )
    return {
        "minutes": round(duration_s / 60, 2),
        "warm_up_s": round(min(WARM_UP_S, duration_s / 10), 1),
        "block_s": round(window[1] - window[0], 1),
        "uplink_ms": summary(up),
        "uplink_sent": len(c.up),
        "uplink_paired": len(up_all),
        "downlink_first_ms": summary(down_first),
        "downlink_transit_ms": summary(split(transit)[0]),
        "downlink_sent": len(c.sent),
        "downlink_received": len(c.down),
        "downlink_paired": len(down_pairs),
        "replies": sum(1 for _, _, is_first in c.sent if is_first),
        "realism": "realistic",
        "spend": c.spend,
        "blocked_uplink_ms": summary(up_busy),
        "blocked_downlink_first_ms": summary(down_busy),
        "barge_in": barge_ins,
        "frames_per_min": round(60 * frames / steady_s, 1),
        "frames_kept_mb": round(sum(size for _, size in kept) / 2**20, 1),
        "kernel_cpu_pct": None if cpu_pct is None else round(cpu_pct, 2),
        "kernel_cpu_by_thread": (
            cpu_by_thread(
                c.thread_names, c.threads[first_row], c.threads[-1], kernel[-1][0] - kernel[0][0]
            )
            if len(kernel) > 1 and len(c.threads) == len(c.kernel)
            else {}
        ),
        "kernel_rss_mb": {
            "start": round(kernel[0][2], 1),
            "end": round(kernel[-1][2], 1),
            "growth": round(kernel[-1][2] - kernel[0][2], 1),
        },
        "kernel_series": [
            [round(t - c.kernel[0][0], 1), round(cpu, 3), round(rss, 1)] for t, cpu, rss in c.kernel
        ],
        "latency_series": {
            "uplink": [round(ms, 1) for ms in up],
            "downlink_first": [round(ms, 1) for ms in down_first],
            "blocked_uplink": [round(ms, 1) for ms in up_busy],
        },
    }


def _barge_ins(c: Collected, steady: Callable[[float], bool]) -> dict[str, Any]:
    """Pair each ``interrupted`` the emulator sent with the page's flush that followed; the
    figures count those sent at ``steady`` times while a reply was playing."""
    received = [(row[0] / 1000, 0) for row in c.page_interrupts]
    pairs = pair([(t, 0) for t in c.interrupted], received)
    quanta: list[float] = []
    heard_ms: list[float] = []
    loud = 0
    for i, j in pairs:
        _, q, silent_at, samples, playing = c.page_interrupts[j]
        if not playing or not steady(c.interrupted[i]):
            continue  # nothing to silence (the reply had played out), or not steady
        quanta.append(float(q))
        heard_ms.append(silent_at - c.interrupted[i] * 1000)
        loud += samples > 0
    return {
        "n": len(quanta),
        "interrupted": len(c.interrupted),
        "quanta": summary(quanta),
        "not_silent": loud,
        "to_silence_at_output_ms": summary(heard_ms),
        "slack_s": CLOCK_SLACK_S,
    }
