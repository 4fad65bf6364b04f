"""The API key stays in the kernel: a session run with a sentinel key from the environment,
the notebook saved with widget state, and the sentinel is nowhere but where it must be."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from screenshare_widget.emulator import LiveEmulator

from .jupyterlab import JupyterLab, open_notebook, run_cell, wait_cell_done, write_notebook

pytestmark = pytest.mark.browser

SENTINEL = "AIzaSySENTINEL-do-not-leak-0123456789xyz"


@pytest.fixture(scope="module")
def emulator() -> Iterator[LiveEmulator]:
    emu = LiveEmulator(api_keys={SENTINEL}).start_in_thread()  # proves the key was used
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, emulator: LiveEmulator) -> Iterator[JupyterLab]:
    env = {
        "GEMINI_API_KEY": SENTINEL,
        "GOOGLE_GEMINI_BASE_URL": emulator.url,  # the SDK's own variables, as a user sets them
        "SSL_CERT_FILE": emulator.cafile,
    }
    server = JupyterLab.start(
        tmp_path_factory.mktemp("key-root"),
        tmp_path_factory.mktemp("key-state"),
        env=env,
        save_widget_state=True,
    )
    yield server
    server.stop()


def test_the_key_never_leaves_the_kernel(
    page: Any, lab: JupyterLab, emulator: LiveEmulator
) -> None:
    write_notebook(
        lab.root / "key.ipynb",
        [
            # Everything at DEBUG: websockets would log the key header if nothing redacted it.
            "import logging\n"
            "logging.basicConfig(level=logging.DEBUG, filename='kernel-debug.log')\n"
            "from screenshare_widget import ScreenShareAssistant\n"
            "assistant = ScreenShareAssistant()\n"
            "assistant",
            "print(assistant.status, repr(assistant.error), assistant.backend)\n"
            "print(assistant.transcript.to_markdown())\n"
            "assistant.stop()",
        ],
    )
    open_notebook(page, lab, "key.ipynb")
    for _ in range(3):
        run_cell(page, 0)
        try:
            page.wait_for_selector(".ssw-share", timeout=20_000)
            break
        except Exception:
            continue
    page.click(".ssw-share")
    page.wait_for_selector(".ssw-status[data-status='live']", timeout=30_000)
    page.wait_for_selector(".ssw-turn[data-role='model']", timeout=40_000)
    run_cell(page, 1)
    wait_cell_done(page, 1)
    page.wait_for_selector(".ssw-status[data-status='idle']", timeout=10_000)

    # The key did reach the Live server (the emulator accepts only the sentinel).
    rec = emulator.traffic
    assert rec.connections >= 1
    assert rec.key_present(0)

    # Save the notebook with its widget state, as a user pressing Ctrl+S would.
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 20
    saved = ""
    while time.monotonic() < deadline:
        saved = (lab.root / "key.ipynb").read_text()
        if "application/vnd.jupyter.widget-state+json" in saved:
            break
        page.wait_for_timeout(200)
    notebook = json.loads(saved)
    state = notebook["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    assert any(
        "ScreenShareAssistant" in json.dumps(m) or "_esm" in m.get("state", {})
        for m in state["state"].values()
    )
    assert SENTINEL not in saved

    page_text = page.content() + page.evaluate("document.documentElement.innerText")
    assert SENTINEL not in page_text
    kernel_log = (lab.root / "kernel-debug.log").read_text()
    assert "x-goog-api-key" in kernel_log  # the kernel logged the handshake at DEBUG ...
    assert SENTINEL not in kernel_log  # ... without the key
    assert SENTINEL not in lab.log()
    for message in rec.messages:
        assert SENTINEL not in json.dumps(message.summary, default=str)
