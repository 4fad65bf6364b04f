"""The main flow (flow.py) in the notebook hosts besides JupyterLab's own page: Notebook 7,
and JupyterLab inside a host page whose frame denies `microphone` and `display-capture` (as
VS Code's and Colab's output frames do), where the cell shares through the capture window.
Chromium's fake screen and microphone; the local Live emulator."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright

from screenshare_widget.emulator import LiveEmulator

from .flow import SWAP, TRANSCRIPT, Host, main_flow, poll, quiet_browser
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
#: JupyterLab may be framed by the host page's server (another port on 127.0.0.1).
FRAME_CSP = "frame-ancestors 'self' http://127.0.0.1:*"
#: A host page that frames ?src= and denies the frame both capture features.
DENYING_HOST = b"""<!doctype html><html><head><title>a host that denies capture</title></head>
<body style="margin:0"><iframe name="notebook" width="1270" height="710"
  allow="microphone 'none'; display-capture 'none'"></iframe>
<script>document.querySelector("iframe").src =
  new URLSearchParams(location.search).get("src");</script></body></html>"""
CELLS = {TRANSCRIPT: 1, SWAP: 2}


@pytest.fixture(scope="module")
def browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = quiet_browser(playwright, tmp_path_factory.mktemp("hosts-audio"))
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab (and Notebook 7, the same server) that a page on 127.0.0.1 may frame."""
    settings = json.dumps({"headers": {"Content-Security-Policy": FRAME_CSP}})
    server = JupyterLab.start(
        tmp_path_factory.mktemp("hosts-root"),
        tmp_path_factory.mktemp("hosts-state"),
        args=[f"--ServerApp.tornado_settings={settings}"],
    )
    yield server
    server.stop()


class _HostHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(DENYING_HOST)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


@pytest.fixture(scope="module")
def host_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostHandler)
    thread = threading.Thread(target=server.serve_forever, name="denying-host", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/host.html"
    server.shutdown()
    server.server_close()
    thread.join(5)


class Framed:
    """JupyterLab in the host page's frame, with the calls of a Playwright page that the
    JupyterLab helpers make (``goto`` loads the URL into the frame)."""

    def __init__(self, page: Page, host_url: str) -> None:
        self.page, self.host_url = page, host_url
        self.keyboard = page.keyboard

    @property
    def frame(self) -> Any:
        frame = self.page.frame(name="notebook")
        assert frame is not None, "the host page has no notebook frame"
        return frame

    def goto(self, url: str) -> None:
        self.page.goto(f"{self.host_url}?src={urllib.parse.quote(url, safe='')}")

    def screenshot(self, **options: Any) -> Any:
        return self.page.screenshot(**options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.frame, name)


def _cells_python(view: Any) -> Any:
    """Python for the flow, run in the notebook's prepared cells."""

    def run(code: str) -> str:
        index = CELLS[code]
        run_cell(view, index)
        wait_cell_done(view, index)
        return str(cell_output(view, index))

    return run


def _notebook(lab: JupyterLab, emulator: LiveEmulator, name: str) -> None:
    write_notebook(lab.root / name, [assistant_cell(emulator), TRANSCRIPT, SWAP])


def _kernel_idle(lab: JupyterLab) -> bool:
    with urllib.request.urlopen(f"{lab.base}/api/kernels?token={lab.token}", timeout=5) as r:
        kernels = json.loads(r.read())
    return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)


def test_notebook_7(page: Page, lab: JupyterLab, emulator: LiveEmulator) -> None:
    emulator.traffic.clear()
    _notebook(lab, emulator, "nb7.ipynb")
    page.goto(lab.notebook7_url("nb7.ipynb"))
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=60_000)
    poll(page, "1", lambda _: _kernel_idle(lab), 60)
    for _ in range(3):  # a Shift+Enter right after load may be swallowed, as in JupyterLab
        run_cell(page, 0)
        try:
            page.wait_for_selector(".ssw-share", timeout=15_000)
            break
        except Exception:
            continue
    assert page.url.split("?")[0].endswith("/notebooks/nb7.ipynb")
    host = Host(view=page, python=_cells_python(page), share=lambda: page.click(".ssw-share"))
    main_flow(host, emulator)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "notebook7-after.png"))


def test_a_frame_that_denies_capture_shares_through_the_capture_window(
    page: Page, lab: JupyterLab, emulator: LiveEmulator, host_url: str
) -> None:
    emulator.traffic.clear()
    _notebook(lab, emulator, "framed.ipynb")
    view = Framed(page, host_url)
    show_widget(view, lab, ARTIFACTS, "framed.ipynb")
    notice = view.text_content(".ssw-notice") or ""
    assert "does not allow screen sharing or the microphone" in notice, notice
    assert view.text_content(".ssw-share") == "Share from a new window"
    windows: list[Page] = []

    def share() -> None:
        with page.context.expect_page() as opened:
            view.click(".ssw-share")
        windows.append(opened.value)
        opened.value.click(".ssw-window-share")

    main_flow(Host(view=view, python=_cells_python(view), share=share), emulator)
    # Stop in the cell (the flow's last step) closed the window and what it captured.
    poll(page, "1", lambda _: windows[0].is_closed(), 5)
    page.screenshot(path=str(ARTIFACTS / "framed-capture-window.png"))
