"""A marimo server (``marimo edit`` or ``marimo run``) on 127.0.0.1 for one notebook, and the
notebook the main flow drives there: the widget through ``mo.ui.anywidget``, and run buttons
whose cells print the transcript and swap the system instruction (in an app, buttons are how
a user runs Python)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from screenshare_widget.emulator import LiveEmulator

from .jupyterlab import free_port

#: How long marimo may take to answer after start (s).
START_TIMEOUT_S = 60.0

NOTEBOOK = """import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo
    from screenshare_widget import ScreenShareAssistant
    from screenshare_widget.gemini import client_for_emulator

    assistant = ScreenShareAssistant(client=client_for_emulator({url!r}, {cafile!r}))
    widget = mo.ui.anywidget(assistant)
    widget
    return assistant, mo


@app.cell
def _(mo):
    transcript_button = mo.ui.run_button(label="transcript")
    transcript_button
    return (transcript_button,)


@app.cell
def _(assistant, mo, transcript_button):
    mo.stop(not transcript_button.value)
    import json

    mo.plain_text("TRANSCRIPT " + json.dumps([t.to_record() for t in assistant.transcript]))
    return


@app.cell
def _(mo):
    swap_button = mo.ui.run_button(label="swap")
    swap_button
    return (swap_button,)


@app.cell
def _(assistant, mo, swap_button):
    mo.stop(not swap_button.value)
    assistant.system_instruction = 'Start every answer with "Switched"'
    mo.plain_text("SWAPPED swapped, version " + str(assistant.instruction_version))
    return


if __name__ == "__main__":
    app.run()
"""


def write_marimo_notebook(path: Path, emulator: LiveEmulator) -> Path:
    path.write_text(NOTEBOOK.format(url=emulator.url, cafile=str(emulator.cafile)))
    return path


@dataclass
class Marimo:
    """A running marimo server for one notebook."""

    mode: Literal["edit", "run"]
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @classmethod
    def start(cls, notebook: Path, mode: Literal["edit", "run"], state: Path) -> Marimo:
        port = free_port()
        # A private user config, in which edit mode runs the notebook on open (as a user who
        # clicked "Run all"; marimo's default leaves the cells stale).
        config = state / "config" / "marimo" / "marimo.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("[runtime]\nauto_instantiate = true\n")
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(state / "config"),
            "XDG_STATE_HOME": str(state / "state"),
            "XDG_CACHE_HOME": str(state / "cache"),
            "MARIMO_SKIP_UPDATE_CHECK": "1",
        }
        env.pop("GEMINI_API_KEY", None)
        env.pop("GOOGLE_API_KEY", None)
        marimo = Path(sys.executable).parent / "marimo"
        cmd = [str(marimo), mode, str(notebook), "--headless", "--host", "127.0.0.1",
               "--port", str(port), "--no-token"]  # fmt: skip
        log_path = state / f"marimo-{mode}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            cmd, env=env, cwd=state, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        server = cls(mode=mode, port=port, process=process, log_path=log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"marimo {mode} exited early:\n{server.log()[-3000:]}")
            try:
                with urllib.request.urlopen(server.url, timeout=2):
                    return server
            except OSError:
                time.sleep(0.2)
        server.stop()
        raise RuntimeError(f"marimo {mode} did not answer in time:\n{server.log()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM the server and its kernels; SIGKILL if they do not go in time."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
