"""The whole product in a real browser: JupyterLab on 127.0.0.1, Debian's chromium with fake
screen and microphone, the widget's kernel relaying to the local Live emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Playwright

from screenshare_widget.emulator import Lifetimes, LiveEmulator

from .flow import quiet_browser
from .jupyterlab import (
    JupyterLab,
    assistant_cell,
    cell_output,
    run_cell,
    show_widget,
    wait_cell_done,
    write_notebook,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SEAM = "globalThis.__screenshareWidget.controllers[0]"

# Taps the player's output in the playback context: counts samples and audible samples.
TAP_WORKLET = """
class Tap extends AudioWorkletProcessor {
  constructor() { super(); this.frames = 0; this.loud = 0; this.peak = 0;
    this.port.onmessage = () => this.port.postMessage(
      {frames: this.frames, loud: this.loud, peak: this.peak}); }
  process(inputs, outputs) {
    const x = inputs[0][0], y = outputs[0][0];
    if (x) { for (let i = 0; i < x.length; i++) { const a = Math.abs(x[i]);
      if (a > 1e-3) this.loud++; if (a > this.peak) this.peak = a; } if (y) y.set(x);
      this.frames += x.length; }
    return true; }
}
registerProcessor('test-tap', Tap);
"""

INSTALL_TAP = """async (src) => {
  const c = globalThis.__screenshareWidget.controllers[0];
  const ctx = c.playbackContext;
  const url = URL.createObjectURL(new Blob([src], {type: 'text/javascript'}));
  await ctx.audioWorklet.addModule(url);
  const tap = new AudioWorkletNode(ctx, 'test-tap');
  c.playerNode.disconnect();
  c.playerNode.connect(tap);
  tap.connect(ctx.destination);
  globalThis.__tap = tap;
  return true;
}"""

READ_TAP = """() => new Promise(resolve => {
  globalThis.__tap.port.onmessage = e => resolve(e.data);
  globalThis.__tap.port.postMessage('dump');
})"""


@pytest.fixture(scope="module")
def browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """A chromium of this module's own, whose fake microphone pauses long after asking."""
    chromium = quiet_browser(playwright, tmp_path_factory.mktemp("lab-audio"))
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def poll(page: Any, expression: str, predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if predicate(value):
            return value
        page.wait_for_timeout(100)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last value {value!r}")


def test_share_talk_hear_and_stop(page: Any, lab: JupyterLab, emulator: LiveEmulator) -> None:
    rec = emulator.traffic
    rec.clear()
    write_notebook(
        lab.root / "flow.ipynb",
        [
            assistant_cell(emulator),
            "import json\nprint(json.dumps([t.to_record() for t in assistant.transcript]))",
        ],
    )
    show_widget(page, lab, ARTIFACTS, "flow.ipynb")
    assert emulator.url.removeprefix("https://") in page.inner_text(".ssw-backend")

    page.click(".ssw-share")
    page.wait_for_selector(".ssw-status[data-status='live']", timeout=30_000)
    page.evaluate(INSTALL_TAP, TAP_WORKLET)

    # The microphone: 16 kHz PCM whose duration matches wall time within 10 %.
    # What the page captured while the session was connecting arrives first, as a burst (the
    # relay holds up to a second); measure the steady stream after it.
    assert rec.wait_for(lambda r: r.audio_seconds() >= 8.0, 30), "no steady audio arrived"
    audio = rec.audio
    steady = [a for a in audio if a.t >= audio[0].t + 2.0]
    wall = steady[-1].t - steady[0].t
    seconds = sum(len(a.data) for a in steady[1:]) / 32_000
    assert wall > 4.0
    print(f"uplink: {seconds:.2f} s of audio arrived in {wall:.2f} s of wall time")
    assert abs(seconds - wall) <= 0.1 * wall, (seconds, wall)
    samples = np.frombuffer(b"".join(a.data for a in audio), dtype="<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 100, "the fake microphone's speech did not come through"

    # The screen: JPEG frames with the fake screen's aspect ratio, at most one a second.
    screen = page.evaluate(f"{SEAM}.tracks().filter(t => t.kind === 'video')[0].getSettings()")
    frames = rec.frames
    assert frames, "no frames arrived"
    for frame in frames:
        assert frame.data[:3] == b"\xff\xd8\xff"
        assert max(frame.width, frame.height) <= 1024
        assert frame.width / frame.height == pytest.approx(
            screen["width"] / screen["height"], rel=0.01
        )
    span = frames[-1].t - frames[0].t
    assert len(frames) <= span + 1.5, f"{len(frames)} frames in {span:.1f} s"

    # The reply: the emulator answers what it received; all of it plays, with no underrun.
    page.wait_for_selector(
        ".ssw-turn[data-role='model']:not([data-interrupted]):has-text('pixels')", timeout=30_000
    )
    stats = poll(
        page,
        f"{SEAM}.stats()",
        lambda s: s["played"] > 12_000 and s["queued"] == 0,
        30,
        "the reply to finish playing",
    )
    print(f"playback: {stats}")
    assert stats["underruns"] == 0, stats
    tap = page.evaluate(READ_TAP)
    assert tap["loud"] > 6_000, tap  # a quarter second of audible speech reached the output
    assert tap["peak"] > 0.05, tap

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-live.png"))

    # The transcript, read from Python in another cell while the session runs.
    run_cell(page, 1)
    wait_cell_done(page, 1)
    turns = json.loads(cell_output(page, 1))
    answer = next(t for t in turns if t["role"] == "model")
    assert answer["text"].startswith("You spoke for"), answer
    assert "screen frame" in answer["text"], answer
    assert not answer["interrupted"], answer
    assert any(t["role"] == "user" for t in turns), turns

    # Stop ends every track (the browser's sharing indicator goes away).
    page.click(".ssw-stop")
    poll(
        page,
        f"{SEAM}.tracks().map(t => t.readyState)",
        lambda states: all(s == "ended" for s in states),
        10,
        "every track to end",
    )
    page.wait_for_selector(".ssw-status[data-status='idle']", timeout=10_000)


def test_conversation_continues_while_a_cell_is_busy(
    page: Any, lab: JupyterLab, emulator: LiveEmulator
) -> None:
    rec = emulator.traffic
    write_notebook(
        lab.root / "busy.ipynb",
        [assistant_cell(emulator), "import time\ntime.sleep(15)\nprint('slept')"],
    )
    show_widget(page, lab, ARTIFACTS, "busy.ipynb")
    page.click(".ssw-share")
    page.wait_for_selector(".ssw-status[data-status='live']", timeout=30_000)
    connection = rec.connections - 1
    assert rec.wait_for(lambda r: r.audio_seconds(connection) >= 2.0, 20)

    started = time.time()
    run_cell(page, 1)
    wait_cell_done(page, 1, timeout_ms=60_000)
    ended = time.time()
    assert ended - started >= 14, "the busy cell did not run"
    assert "slept" in cell_output(page, 1)

    # Audio kept arriving at the emulator during the sleep, not only after it.
    window = (started + 2.0, ended - 1.0)
    during = [a for a in rec.audio if a.connection == connection and window[0] <= a.t <= window[1]]
    received = sum(len(a.data) for a in during) / 32_000
    print(f"busy cell: {received:.2f} s of audio arrived in a {window[1] - window[0]:.2f} s window")
    assert received >= 0.8 * (window[1] - window[0]), (received, window)
    page.click(".ssw-stop")


WATCH_STATUS = """() => {
  globalThis.__statuses = [];
  globalThis.__notices = [];
  const root = document.querySelector('.ssw');
  const record = () => {
    const status = root.querySelector('.ssw-status')?.dataset.status;
    if (status && globalThis.__statuses.at(-1) !== status) globalThis.__statuses.push(status);
    const notice = root.querySelector('.ssw-notice')?.textContent;
    if (notice && globalThis.__notices.at(-1) !== notice) globalThis.__notices.push(notice);
  };
  new MutationObserver(record).observe(root, {subtree: true, attributes: true, childList: true,
                                              characterData: true});
  record();
}"""


def test_a_handover_mid_conversation(page: Any, lab: JupyterLab) -> None:
    # goAway 4 s into each connection, in the middle of the first answer; then, like the
    # real service, the old connection says nothing more.
    emu = LiveEmulator(lifetimes=Lifetimes(connection_s=20.0, go_away_before_s=16.0))
    emu.start_in_thread()
    try:
        write_notebook(
            lab.root / "handover.ipynb",
            [
                assistant_cell(emu),
                "import json\n"
                "print(json.dumps({'handovers': [(h.at.timestamp(), h.reason, h.resumed, h.gap_ms,"
                " h.replayed_s) for h in assistant.handovers],"
                " 'turns': [t.to_record() for t in assistant.transcript]}))",
            ],
        )
        show_widget(page, lab, ARTIFACTS, "handover.ipynb")
        page.evaluate(WATCH_STATUS)
        page.click(".ssw-share")
        page.wait_for_selector(".ssw-status[data-status='live']", timeout=30_000)
        # First exchange, then the handover, then the next question is answered.
        assert emu.traffic.wait_for(lambda r: r.connections >= 2, 40), "no handover"
        page.wait_for_function(
            "document.querySelectorAll(`.ssw-turn[data-role='model']:not([data-partial])`)"
            ".length >= 2",
            timeout=40_000,
        )
        statuses = page.evaluate("globalThis.__statuses")
        assert "reconnecting" in statuses, statuses
        assert statuses[statuses.index("reconnecting") + 1 :][:1] == ["live"], statuses
        notices = page.evaluate("globalThis.__notices")
        assert any("resumed" in n for n in notices), notices
        # Live again (each connection gets its goAway 4 s in, so the next move may be under
        # way by now: what must hold is that it comes back to live).
        page.wait_for_selector(".ssw-status[data-status='live']", timeout=15_000)
        page.wait_for_selector(".ssw-connection[data-connection='resumed']", timeout=10_000)
        assert page.locator(".ssw-timer").is_visible()
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-handover.png"))

        run_cell(page, 1)
        wait_cell_done(page, 1)
        data = json.loads(cell_output(page, 1))
        (at, reason, resumed, gap_ms, replayed_s), *_ = data["handovers"]
        assert (reason, resumed) == ("goAway", True)
        assert gap_ms is not None
        assert gap_ms < 1000
        users = [t for t in data["turns"] if t["role"] == "user"]
        models = [t for t in data["turns"] if t["role"] == "model"]
        if models[0]["interrupted"]:
            # The service stopped the first answer mid-way: the question went again to the
            # new connection, which answered it whole; still one user turn for it.
            assert replayed_s > 0.5
            answer = models[1]
            assert answer["started_at"] > at and not answer["interrupted"], data["turns"]
        else:  # all of the answer had come before the goAway
            answer = models[0]
        assert answer["text"].startswith("You spoke for"), answer
        assert users[0]["ended_at"] < models[0]["started_at"]
        assert len([u for u in users if u["started_at"] < answer["started_at"]]) == 1
        assert models[-1]["started_at"] > at  # and the conversation went on after it
        page.click(".ssw-stop")
    finally:
        emu.stop()


def test_instruction_changes_while_live_from_python_and_from_the_widget(
    page: Any, lab: JupyterLab, emulator: LiveEmulator
) -> None:
    write_notebook(
        lab.root / "instructions.ipynb",
        [
            assistant_cell(emulator),
            "assistant.system_instruction = 'Start every answer with \"Switched\"'\n"
            "print(assistant.instruction_version)",
            "import json\n"
            "print(json.dumps({'turns': [t.to_record() for t in assistant.transcript],"
            " 'instructions': [(i.version, i.text, i.applied_by)"
            " for i in assistant.instructions], 'paused': assistant.video_paused}))",
        ],
    )
    show_widget(page, lab, ARTIFACTS, "instructions.ipynb")
    page.click(".ssw-share")
    page.wait_for_selector(".ssw-status[data-status='live']", timeout=30_000)
    model_turn = ".ssw-turn[data-role='model']"
    page.wait_for_selector(f"{model_turn}:not([data-partial]):has-text('pixels')", timeout=40_000)
    first = page.locator(model_turn).first.inner_text()

    # From Python, while live: the next spoken question is answered under the new rule.
    run_cell(page, 1)
    wait_cell_done(page, 1)
    assert cell_output(page, 1).strip() == "2"
    page.wait_for_selector(".ssw-instruction[data-applied='2']", timeout=10_000)
    page.wait_for_selector(f"{model_turn}:has-text('Switched You spoke for')", timeout=40_000)
    assert page.locator(model_turn).first.inner_text() == first  # the transcript is kept

    # From the widget: edit the instruction box and apply, then type a question.
    page.click(".ssw-instruction-summary")
    assert page.input_value(".ssw-instruction-text") == 'Start every answer with "Switched"'
    page.fill(".ssw-instruction-text", 'Start every answer with "Typed rule"')
    page.click(".ssw-apply")
    page.wait_for_selector(".ssw-instruction[data-applied='3']", timeout=10_000)
    page.fill(".ssw-text-input", "hello from the page")
    page.press(".ssw-text-input", "Enter")
    page.wait_for_selector(
        f"{model_turn}:has-text('Typed rule You wrote: hello from the page')", timeout=30_000
    )
    assert page.input_value(".ssw-text-input") == ""
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-instructions.png"))
    page.click(".ssw-pause-video")  # the page's other own trait, written by the kernel too
    page.wait_for_selector(".ssw-pause-video[data-kernel='true']", timeout=10_000)

    run_cell(page, 2)
    wait_cell_done(page, 2)
    data = json.loads(cell_output(page, 2))
    assert [v[:1] + v[2:] for v in data["instructions"]] == [
        [1, "setup"],
        [2, "context_update"],
        [3, "context_update"],
    ]
    assert data["paused"] is True
    models = [t for t in data["turns"] if t["role"] == "model"]
    assert models[0]["text"].startswith("You spoke for") and models[0]["instruction"] == 1
    switched = [t for t in models if t["text"].startswith("Switched")]
    assert switched and all(t["instruction"] == 2 for t in switched)
    typed = [t for t in data["turns"] if t["typed"]]
    assert [(t["text"], t["role"]) for t in typed] == [("hello from the page", "user")]
    assert any(t["text"].startswith("Typed rule") and t["instruction"] == 3 for t in models)
    page.click(".ssw-stop")


def test_a_tool_call_shows_in_the_widget_and_the_answer_uses_its_result(
    page: Any, lab: JupyterLab, emulator: LiveEmulator
) -> None:
    write_notebook(
        lab.root / "tools.ipynb",
        [
            "import pandas as pd\n"
            "from screenshare_widget.tools import needs_confirmation, notebook_tools\n"
            "sales = pd.DataFrame({'region': ['north', 'south', 'east'], 'units': [12, 8, 14]})\n"
            "@needs_confirmation\n"
            "def drop_column(column: str) -> str:\n"
            "    'Drop a column of sales (asks first).'\n"
            "    sales.drop(columns=[column], inplace=True)\n"
            "    return f'dropped {column}'\n"
            + assistant_cell(emulator).replace(
                "(client=", "(tools=[*notebook_tools(), drop_column], client="
            ),
            "import json\nprint(json.dumps([c.to_record() for c in assistant.tool_calls]))",
        ],
    )
    show_widget(page, lab, ARTIFACTS, "tools.ipynb")
    page.click(".ssw-share")
    page.wait_for_selector(".ssw-status[data-status='live']", timeout=30_000)
    model_turn = ".ssw-turn[data-role='model']"
    page.wait_for_selector(f"{model_turn}:not([data-partial]):has-text('pixels')", timeout=40_000)
    played = page.evaluate(f"{SEAM}.stats()")["played"]

    page.fill(".ssw-text-input", "call describe_dataframe name=sales")
    page.press(".ssw-text-input", "Enter")
    tool = page.wait_for_selector(".ssw-tool[data-outcome='ok']", timeout=20_000)
    shown = tool.inner_text()
    assert 'describe_dataframe({"name": "sales"})' in shown, shown
    assert '"rows": 3' in shown and " ms" in shown, shown
    answer = page.wait_for_selector(  # whole: the transcription comes in small pieces
        f"{model_turn}:not([data-partial]):has-text('The tool describe_dataframe returned')",
        timeout=20_000,
    )
    assert '"rows": 3' in answer.inner_text()
    poll(page, f"{SEAM}.stats()", lambda s: s["played"] > played + 24_000, 20, "the answer to play")
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-tools.png"))

    # A tool that changes things runs only after the Allow click.
    page.fill(".ssw-text-input", "call drop_column column=units")
    page.press(".ssw-text-input", "Enter")
    page.wait_for_selector(".ssw-tool:has-text('drop_column') .ssw-allow", timeout=20_000)
    page.click(".ssw-tool:has-text('drop_column') .ssw-allow")
    page.wait_for_selector(".ssw-tool[data-outcome='ok']:has-text('dropped units')", timeout=20_000)

    run_cell(page, 1)
    wait_cell_done(page, 1)
    described, dropped = json.loads(cell_output(page, 1))
    assert (described["name"], described["outcome"]) == ("describe_dataframe", "ok")
    assert '"units": "int64"' in described["result"]
    assert (dropped["name"], dropped["outcome"], dropped["confirm"]) == ("drop_column", "ok", True)
    page.click(".ssw-stop")
