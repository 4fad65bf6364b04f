"""The main flow (flow.py) in marimo, in edit mode and as an app (``marimo run``): the widget
through ``mo.ui.anywidget``, Python through run buttons. Chromium's fake screen and
microphone; the local Live emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Page, Playwright

from screenshare_widget.emulator import LiveEmulator

from .flow import SWAP, TRANSCRIPT, Host, main_flow, quiet_browser
from .marimo import Marimo, write_marimo_notebook

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: The flow's Python, as the notebook's buttons run it: (label, what its output starts with).
BUTTONS = {TRANSCRIPT: ("transcript", "TRANSCRIPT "), SWAP: ("swap", "SWAPPED ")}


@pytest.fixture(scope="module")
def browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = quiet_browser(playwright, tmp_path_factory.mktemp("marimo-audio"))
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    yield context.new_page()
    context.close()


def _buttons_python(page: Page) -> Any:
    """Python for the flow: click the cell's button, read what its output cell printed."""

    def run(code: str) -> str:
        label, prefix = BUTTONS[code]
        output = page.locator(f"pre:has-text('{prefix}')")
        before = output.first.inner_text() if output.count() else None
        page.get_by_role("button", name=label, exact=True).click()
        page.wait_for_function(
            "([prefix, before]) => { const out = [...document.querySelectorAll('pre')]"
            ".find((p) => p.textContent.startsWith(prefix)); "
            "return out && out.textContent !== before; }",
            arg=[prefix, before],
            timeout=30_000,
        )
        return str(output.first.inner_text()).removeprefix(prefix)

    return run


@pytest.mark.parametrize("mode", ["edit", "run"])
def test_marimo(
    page: Page,
    emulator: LiveEmulator,
    tmp_path: Path,
    mode: Literal["edit", "run"],
) -> None:
    emulator.traffic.clear()
    notebook = write_marimo_notebook(tmp_path / "flow.py", emulator)
    server = Marimo.start(notebook, mode, tmp_path)
    try:
        page.goto(server.url)
        page.wait_for_selector(".ssw-share", timeout=90_000)
        python = _buttons_python(page)
        host = Host(view=page, python=python, share=lambda: page.click(".ssw-share"))
        main_flow(host, emulator)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"marimo-{mode}.png"))
    except Exception:
        print(server.log()[-4000:])
        raise
    finally:
        server.stop()
