"""Nothing outlives what the user can see, in JupyterLab with chromium's fake screen and mic.

One test per way a user leaves a live session: closing the notebook's tab (and reopening it),
clearing the output, re-running the cell, restarting the kernel, closing the browser page.
Each checks the captured tracks' ``readyState`` and audio contexts in the page, and the
session in the kernel (the emulator's connection, and the assistants' status).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright

from screenshare_widget.emulator import LiveEmulator
from screenshare_widget.liveness import PAGE_TIMEOUT_S
from screenshare_widget.protocol import BEAT_INTERVAL_S

from .chromium import launch_options
from .jupyterlab import (
    JupyterLab,
    accept_dialogs,
    cell_output,
    open_notebook,
    run_cell,
    show_widget,
    wait_cell_done,
    write_notebook,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: The promise: no view left, no capture, within this long (s).
CAPTURE_ENDS_S = 1.0
#: The longest a session may outlive its page: the timeout, a beat, and the relay's tick.
SESSION_ENDS_S = PAGE_TIMEOUT_S + BEAT_INTERVAL_S + 1.0

#: Remember controller ``i``'s tracks and audio contexts, to look at them after it is gone.
KEEP = """(i) => {
  const c = globalThis.__screenshareWidget.controllers[i];
  globalThis.__kept = {tracks: c.tracks(), contexts: [c.captureContext, c.playbackContext]};
  return globalThis.__kept.tracks.map((t) => t.kind + ':' + t.readyState);
}"""
KEPT = """() => ({
  tracks: globalThis.__kept.tracks.map((t) => t.readyState),
  contexts: globalThis.__kept.contexts.map((c) => (c ? c.state : 'none')),
})"""


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def cells(emulator: LiveEmulator, *more: str) -> list[str]:
    """Cell 0 shows a new assistant (each one kept in ``shown``); cell 1 prints their
    statuses, errors and events; then ``more``."""
    return [
        "from screenshare_widget import ScreenShareAssistant\n"
        "from screenshare_widget.gemini import client_for_emulator\n"
        "shown = globals().setdefault('shown', [])\n"
        "assistant = ScreenShareAssistant(client=client_for_emulator("
        f"{emulator.url!r}, {emulator.cafile!r}))\n"
        "shown.append(assistant)\n"
        "assistant",
        "import json\n"
        "print('STATE', json.dumps([{'status': a.status, 'error': a.error, "
        "'events': [e.kind for e in a.events]} for a in shown]))",
        *more,
    ]


def kernel_state(page: Page, index: int = 1) -> list[dict[str, Any]]:
    """Run the state cell and read what it printed."""
    import json

    run_cell(page, index)
    wait_cell_done(page, index)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = cell_output(page, index)
        match = re.search(r"STATE (\[.*\])", text)
        if match:
            return list(json.loads(match[1]))
        page.wait_for_timeout(100)
    pytest.fail(f"the state cell printed nothing: {cell_output(page, index)!r}")


def share(page: Page, emulator: LiveEmulator, view: int = 0) -> None:
    """Click Share in view ``view`` and wait until the emulator hears the microphone."""
    before = emulator.traffic.audio_seconds()
    page.locator(".ssw-share").nth(view).click()
    page.wait_for_selector(".ssw-status[data-status='live']", timeout=30_000)
    assert emulator.traffic.wait_for(lambda r: r.audio_seconds() >= before + 1.0, 30), (
        "no microphone audio reached the emulator"
    )


def go_live(page: Page, lab: JupyterLab, emulator: LiveEmulator, name: str, *more: str) -> int:
    """Write notebook ``name`` (the cells above, then ``more``), show the assistant, share,
    and keep the capture's tracks and contexts; the emulator's connection count before."""
    write_notebook(lab.root / name, cells(emulator, *more))
    since = emulator.traffic.connections
    show_widget(page, lab, ARTIFACTS, name)
    share(page, emulator)
    assert page.evaluate(KEEP, 0) == ["video:live", "audio:live"]
    return since


def open_connections(emulator: LiveEmulator, since: int) -> set[int]:
    """The emulator's connections opened since connection ``since`` and not yet closed."""
    rec = emulator.traffic
    closed = {index for index, _, _ in rec.closes}
    return set(range(since, rec.connections)) - closed


def wait_capture_ended(page: Page, timeout: float = 10.0) -> float:
    """Wait until every kept track ended and both audio contexts closed; the time it took."""
    started = time.monotonic()
    state: Any = None
    while time.monotonic() - started < timeout:
        state = page.evaluate(KEPT)
        if all(s == "ended" for s in state["tracks"]) and all(
            c in ("closed", "none") for c in state["contexts"]
        ):
            return time.monotonic() - started
        page.wait_for_timeout(20)
    pytest.fail(f"capture still running {timeout} s after its view went: {state}")


def wait_session_ended(emulator: LiveEmulator, since: int, timeout: float) -> float:
    """Wait until the emulator saw every connection since ``since`` close; the time taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not open_connections(emulator, since):
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"the Live session was still open {timeout} s later")


def wait_both_ended(page: Page, emulator: LiveEmulator, since: int, what: str) -> None:
    """Capture ends within the promise, and the session right after it; prints both."""
    took = wait_capture_ended(page)
    print(f"{what}: capture ended {took:.2f} s after")
    assert took <= CAPTURE_ENDS_S + 0.5, took
    session = wait_session_ended(emulator, since, 10)
    print(f"{what}: the session ended {took + session:.2f} s after")


def save(page: Page) -> None:
    """Save the notebook (outputs included) and wait until it is clean."""
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => !document.querySelector('.lm-TabBar-tab.lm-mod-current.jp-mod-dirty')",
        timeout=10_000,
    )


def clear_output(page: Page, index: int) -> None:
    """Clear the output of cell ``index`` from its context menu, as a user would."""
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt")
    prompt.click()  # select the cell: the menu acts on the selected cells
    prompt.click(button="right")
    item = page.locator(".lm-Menu:visible .lm-Menu-item", has_text="Clear Cell Output")
    item.first.click()


def test_closing_the_notebook_tab_ends_capture_and_reopening_shares_again(
    page: Page, lab: JupyterLab, emulator: LiveEmulator
) -> None:
    since = go_live(page, lab, emulator, "close-tab.ipynb")
    save(page)  # so that the reopened notebook shows the widget again

    page.locator(
        "#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon"
    ).click()
    closed = time.monotonic()
    took = wait_capture_ended(page)
    print(f"closing the tab: capture ended {took:.2f} s after")
    assert took <= CAPTURE_ENDS_S + 0.5, took
    wait_session_ended(emulator, since, SESSION_ENDS_S)
    print(f"closing the tab: the session ended {time.monotonic() - closed:.2f} s after")

    # Reopen it: the widget shows again, and Share works again in the same kernel.
    open_notebook(page, lab, "close-tab.ipynb")
    page.wait_for_selector(".ssw-share", timeout=30_000)
    assert kernel_state(page)[0]["status"] == "idle"
    share(page, emulator)
    assert kernel_state(page)[0]["status"] == "live"
    assert len(open_connections(emulator, since)) == 1
    page.locator(".ssw-stop").first.click()
    wait_session_ended(emulator, since, 10)


def test_clearing_the_output_ends_capture_unless_another_view_shows_it(
    page: Page, lab: JupyterLab, emulator: LiveEmulator
) -> None:
    since = go_live(page, lab, emulator, "clear.ipynb", "assistant  # a second view")
    run_cell(page, 2)
    page.wait_for_function("() => document.querySelectorAll('.ssw-share').length === 2")

    # One view goes, another still shows the assistant: the session goes on.
    clear_output(page, 0)
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('.ssw-share').length === 1", timeout=10_000
        )
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "failed-clear-output.png"))
        raise
    heard = emulator.traffic.audio_seconds()
    page.wait_for_timeout(2_000)
    assert page.evaluate(KEPT)["tracks"] == ["live", "live"]
    assert emulator.traffic.audio_seconds() > heard + 1.0

    # The last view goes: capture ends at once, and the session with it.
    clear_output(page, 2)
    wait_both_ended(page, emulator, since, "clearing the output")
    state = kernel_state(page)
    assert state[0]["status"] == "idle", state


def test_rerunning_the_cell_ends_the_earlier_capture_and_session(
    page: Page, lab: JupyterLab, emulator: LiveEmulator
) -> None:
    since = go_live(page, lab, emulator, "rerun.ipynb")

    run_cell(page, 0)  # a new assistant replaces the output
    wait_both_ended(page, emulator, since, "re-running the cell")
    state = kernel_state(page)
    assert [s["status"] for s in state] == ["idle", "idle"], state
    # The new assistant shares as the first did.
    share(page, emulator)
    assert [s["status"] for s in kernel_state(page)] == ["idle", "live"]
    page.locator(".ssw-stop").first.click()
    wait_session_ended(emulator, since, 10)


def test_restarting_the_kernel_ends_capture_and_says_so(
    page: Page, lab: JupyterLab, emulator: LiveEmulator
) -> None:
    since = go_live(page, lab, emulator, "restart.ipynb")

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Kernel$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^Restart Kernel…")).first.click()
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
    took = wait_capture_ended(page)
    print(f"restarting the kernel: capture ended {took:.2f} s after the restart")
    assert took <= CAPTURE_ENDS_S + 0.5, took
    view = page.locator(".ssw").first
    page.wait_for_function(
        "() => document.querySelector('.ssw-error')?.textContent.includes("
        "'The kernel restarted: run the cell again')",
        timeout=5_000,
    )
    assert view.locator(".ssw-share").is_disabled()
    assert view.locator(".ssw-status").inner_text() == "disconnected"
    wait_session_ended(emulator, since, 15)  # the old kernel, and its session, are gone
    accept_dialogs(page)


def kill_processes_with(marker: str) -> int:
    """SIGKILL every process whose command line holds ``marker``; how many there were."""
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
    return killed


def test_a_page_that_went_away_ends_its_session_in_the_page_timeout(
    playwright: Playwright,
    speech_wav: Path,
    browser: Browser,
    lab: JupyterLab,
    emulator: LiveEmulator,
) -> None:
    """A browser that is killed (or crashes, or loses the network) can say nothing: the
    kernel ends the session in the documented time. A page that comes back shows why and
    can share again; closing that one ends its session at once."""
    marker = f"--ssw-doomed-browser-{secrets.token_hex(4)}"  # chromium ignores the switch
    options = launch_options(speech_wav)
    options["args"] = [*options["args"], marker]
    doomed = playwright.chromium.launch(**options)
    try:
        page = doomed.new_page(viewport={"width": 1280, "height": 800})
        since = go_live(page, lab, emulator, "went-away.ipynb")
        save(page)
        assert kill_processes_with(marker) >= 1
        took = wait_session_ended(emulator, since, SESSION_ENDS_S + 10)
    finally:
        with contextlib.suppress(Exception):
            doomed.close()
    print(f"a killed browser: the session ended {took:.1f} s after")
    assert took >= PAGE_TIMEOUT_S - 1.0, took  # not before the documented time
    assert took <= SESSION_ENDS_S, took

    again = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    try:
        open_notebook(again, lab, "went-away.ipynb")
        again.wait_for_selector(".ssw-share", timeout=30_000)
        state = kernel_state(again)
        assert state[0]["status"] == "idle", state
        assert "The page sharing with this assistant was not heard from" in state[0]["error"]
        assert "page_lost" in state[0]["events"]
        assert state[0]["error"] in again.inner_text(".ssw-error")
        since = emulator.traffic.connections
        share(again, emulator)

        again.close()  # closing the browser page: it says so on its way out
        took = wait_session_ended(emulator, since, SESSION_ENDS_S + 10)
        print(f"closing the browser page: the session ended {took:.1f} s after")
        assert took <= SESSION_ENDS_S, took
    finally:
        again.context.close()
