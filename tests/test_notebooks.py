"""The notebooks are documentation that runs: each executes top to bottom on the emulator
(the marimo quickstart as marimo runs an app)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.kernel

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    for key in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=dict(os.environ))
    return nb


def outputs_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append(out["text"])
        parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


def test_quickstart_runs_on_the_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = run("quickstart.ipynb", tmp_path, monkeypatch)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.get("output_type") != "error" for c in code for o in c.get("outputs", []))
    # The widget rendered, and it says plainly that the emulator answers.
    assert "application/vnd.jupyter.widget-view+json" in code[0].outputs[0]["data"]
    assert "Local Live emulator" in outputs_text(code[1])
    assert "'idle'" in outputs_text(code[-1])


def test_prototyping_runs_the_whole_loop_on_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = run("prototyping.ipynb", tmp_path, monkeypatch)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    text = {i: outputs_text(c) for i, c in enumerate(code)}
    assert text[1].startswith("'Sure: You wrote: What is on my screen right now?")
    assert "Certainly! You wrote: What should I click next?" in text[5]
    assert "context_update" in text[6]  # the history shows how v2 reached the model
    assert "instruction v2" in text[7]  # the transcript marks the change
    # The recording holds both questions, and the comparison answers them per variant.
    takes = list((tmp_path / "takes").iterdir())
    assert len(takes) == 1 and (takes[0] / "events.jsonl").is_file()
    assert "2 texts" in text[8]
    table = text[9]
    for prefix in ("Sure: You wrote: What is on my screen", "Certainly! You wrote: What should"):
        assert prefix in table
    assert "You wrote: What should I click next?" in table  # the plain variant
    assert "'idle'" in text[len(code) - 1]


def test_tools_notebook_reads_a_dataframe_from_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = run("tools.ipynb", tmp_path, monkeypatch)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    text = [outputs_text(c) for c in code]
    described = text[2]
    assert described.startswith("'The tool describe_dataframe returned {")
    assert '"rows": 4' in described and '"units": "int64"' in described
    assert 'returned {"result": "east"}' in text[3]
    assert "describe_dataframe" in text[4] and "best_region" in text[4]
    assert "raised NameError: the notebook has no variable named" in text[5]
    assert "'idle'" in text[-1]


def test_the_marimo_quickstart_runs_on_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """marimo's own check finds nothing, and the app runs: the assistant it shows is on the
    emulator (no key), idle until Share; the buttons' cells wait for their clicks."""
    for key in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    path = NOTEBOOKS / "quickstart_marimo.py"
    marimo = Path(sys.executable).parent / "marimo"
    check = subprocess.run(
        [str(marimo), "check", str(path)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    spec = importlib.util.spec_from_file_location("quickstart_marimo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, defs = module.app.run()
    assistant = defs["assistant"]
    try:
        assert assistant.emulated is True
        assert assistant.status == "idle"
    finally:
        assistant.close()
