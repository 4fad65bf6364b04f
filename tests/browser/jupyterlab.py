"""A JupyterLab server on 127.0.0.1 and helpers to drive a notebook in it with Playwright."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from screenshare_widget.emulator import LiveEmulator

#: How long JupyterLab may take to answer after start (s); about 2 s here.
SERVER_START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterLab:
    """A running ``jupyter lab`` serving ``root`` with isolated settings."""

    root: Path
    port: int
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def notebook7_url(self, notebook: str) -> str:
        """The same notebook in Notebook 7 (the same server serves both)."""
        return f"{self.base}/notebooks/{notebook}?token={self.token}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @classmethod
    def start(
        cls,
        root: Path,
        state: Path,
        env: dict[str, str] | None = None,
        save_widget_state: bool = False,
        args: list[str] | None = None,
    ) -> JupyterLab:
        """Start a server; ``state`` holds its config, runtime and settings dirs. ``env`` adds
        to the server's (and so the kernels') environment; keys are removed unless given.
        ``args`` go on the command line."""
        port, token = free_port(), secrets.token_hex(16)
        dirs = {
            "JUPYTER_CONFIG_DIR": state / "config",
            "JUPYTER_RUNTIME_DIR": state / "runtime",
            "IPYTHONDIR": state / "ipython",
            "JUPYTERLAB_SETTINGS_DIR": state / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": state / "lab-workspaces",
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        # No news or update checks: this machine has no internet and we want quiet pages.
        notify = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
        notify.mkdir(parents=True, exist_ok=True)
        (notify / "notification.jupyterlab-settings").write_text(
            json.dumps({"checkForUpdates": False, "fetchNews": "false"})
        )
        if save_widget_state:
            manager = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyter-widgets" / "jupyterlab-manager"
            manager.mkdir(parents=True, exist_ok=True)
            (manager / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))
        full_env = {**os.environ, **{k: str(v) for k, v in dirs.items()}}
        full_env.pop("GEMINI_API_KEY", None)
        full_env.pop("GOOGLE_API_KEY", None)
        full_env.update(env or {})
        jupyter = Path(sys.executable).parent / "jupyter"
        log_path = state / "jupyterlab.log"
        log = log_path.open("wb")
        cmd = [
            str(jupyter),
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
            *(args or []),
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        process = subprocess.Popen(
            cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        server = cls(root=root, port=port, token=token, process=process, log_path=log_path)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early:\n{server.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{server.base}/api/status?token={token}", timeout=2):
                    return server
            except OSError:
                time.sleep(0.2)
        server.stop()
        raise RuntimeError(f"jupyter lab did not answer in time:\n{server.log()[-3000:]}")

    def stop(self) -> None:
        """Shut the server (and its kernels) down; SIGTERM if it does not go in time."""
        if self.process.poll() is None:
            request = urllib.request.Request(
                f"{self.base}/api/shutdown",
                method="POST",
                headers={"Authorization": f"token {self.token}"},
            )
            try:
                urllib.request.urlopen(request, timeout=5).close()
                self.process.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells, for the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)


def open_notebook(page: Any, lab: JupyterLab, name: str) -> None:
    """Open ``name`` and wait until its kernel is idle."""
    page.goto(lab.url(name))
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=60_000)
    page.wait_for_selector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached", timeout=60_000
    )


def accept_dialogs(page: Any) -> list[str]:
    """Accept any JupyterLab dialog in the way (a kernel choice on a cold start, say),
    printing its text for the log; returns the texts."""
    texts = []
    dialogs = page.locator(".jp-Dialog")
    for _ in range(3):
        if dialogs.count() == 0:
            break
        text = dialogs.first.inner_text()
        print(f"JupyterLab dialog accepted: {text!r}")
        texts.append(text)
        accept = dialogs.first.locator(".jp-Dialog-button.jp-mod-accept")
        if accept.count():
            accept.first.click()
        else:
            page.keyboard.press("Escape")
        page.wait_for_timeout(300)
    return texts


def run_cell(page: Any, index: int) -> None:
    """Run code cell ``index`` (Shift+Enter in it)."""
    accept_dialogs(page)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".cm-content").click(timeout=10_000)
    page.keyboard.press("Shift+Enter")


def cell_output(page: Any, index: int) -> str:
    """The text of cell ``index``'s output area (never its source)."""
    out = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea")
    return str(out.inner_text())


def wait_cell_done(page: Any, index: int, timeout_ms: float = 60_000) -> None:
    """Wait until cell ``index`` shows an execution count (it ran and finished)."""
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt")
    page.wait_for_function(
        "el => /\\[\\d+\\]/.test(el.textContent)",
        arg=prompt.element_handle(),
        timeout=timeout_ms,
    )


def assistant_cell(emulator: LiveEmulator) -> str:
    """A cell that shows a ScreenShareAssistant talking to ``emulator``."""
    return (
        "from screenshare_widget import ScreenShareAssistant\n"
        "from screenshare_widget.gemini import client_for_emulator\n"
        f"assistant = ScreenShareAssistant(client=client_for_emulator({emulator.url!r}, "
        f"{emulator.cafile!r}))\n"
        "assistant"
    )


def show_widget(page: Any, lab: JupyterLab, artifacts: Path, name: str) -> None:
    """Open the notebook and run its first cell until the widget shows (once more if the
    first Shift+Enter after load was swallowed, a known JupyterLab flake); on failure a
    screenshot goes to ``artifacts``."""
    open_notebook(page, lab, name)
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(0).locator(".jp-InputPrompt")
    for attempt in range(3):
        run_cell(page, 0)
        try:
            page.wait_for_function(
                "el => /\\[(\\*|\\d+)\\]/.test(el.textContent)",
                arg=prompt.element_handle(),
                timeout=5_000,
            )
            break
        except Exception:
            if attempt == 2:
                artifacts.mkdir(exist_ok=True)
                page.screenshot(path=str(artifacts / f"failed-{name}.png"))
                raise
    page.wait_for_selector(".ssw-share", timeout=60_000)
