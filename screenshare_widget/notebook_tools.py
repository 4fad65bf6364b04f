"""Opt-in tools that let the assistant read the user's kernel: variables, DataFrames, the
last traceback and the current cell. None of them runs code or changes anything.

>>> from screenshare_widget.tools import notebook_tools
>>> assistant = ScreenShareAssistant(tools=notebook_tools())
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any, Final

#: Variables listed at most by :func:`list_variables`.
MAX_VARIABLES: Final = 100
#: Rows of a DataFrame shown by :func:`describe_dataframe`.
HEAD_ROWS: Final = 5
#: Longest text value returned (characters).
MAX_TEXT: Final = 4000

_HIDDEN: Final = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open"})


def notebook_tools() -> list[Callable[..., Any]]:
    """The read-only kernel tools: :func:`list_variables`, :func:`describe_dataframe`,
    :func:`last_traceback` and :func:`current_cell_source`."""
    return [list_variables, describe_dataframe, last_traceback, current_cell_source]


def _namespace() -> dict[str, Any]:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return {}
    shell = get_ipython()
    return dict(shell.user_ns) if shell is not None else {}


def _visible(name: str, value: Any) -> bool:
    if name.startswith("_") or name in _HIDDEN:
        return False
    kind = type(value).__name__
    return kind not in {"module", "function", "builtin_function_or_method", "type"}


def list_variables() -> list[dict[str, Any]]:
    """The variables in the user's notebook: name, type, and shape or length when they have
    one. Modules, functions and classes are left out."""
    out = []
    for name, value in _namespace().items():
        if not _visible(name, value):
            continue
        entry: dict[str, Any] = {"name": name, "type": type(value).__name__}
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple):
            entry["shape"] = list(shape)
        else:
            try:
                entry["length"] = len(value)
            except TypeError:
                pass
        out.append(entry)
        if len(out) >= MAX_VARIABLES:
            break
    return out


def describe_dataframe(name: str) -> dict[str, Any]:
    """Describe the pandas DataFrame held by the notebook variable ``name``: its shape,
    column types, first rows and summary statistics of the numeric columns.

    Args:
        name: The variable's name in the notebook, for example "df".
    """
    namespace = _namespace()
    if name not in namespace:
        raise NameError(f"the notebook has no variable named {name!r}")
    frame = namespace[name]
    if not hasattr(frame, "dtypes") or not hasattr(frame, "head"):
        raise TypeError(f"{name} is a {type(frame).__name__}, not a DataFrame")
    numeric = frame.select_dtypes("number")
    summary: dict[Any, dict[Any, Any]] = {}
    if not numeric.empty:
        summary = numeric.describe().round(4).to_dict()
    return {
        "name": name,
        "rows": int(frame.shape[0]),
        "columns": {str(c): str(t) for c, t in frame.dtypes.items()},
        "head": frame.head(HEAD_ROWS).astype(str).to_dict(orient="records"),
        "numeric_summary": {
            str(c): {k: float(v) for k, v in s.items()} for c, s in summary.items()
        },
    }


def last_traceback() -> str:
    """The last error raised in the notebook, as its traceback text ("" if none yet)."""
    value = getattr(sys, "last_value", None)
    if value is None:
        return ""
    text = "".join(traceback.format_exception(type(value), value, value.__traceback__))
    return text[-MAX_TEXT:]


def current_cell_source() -> str:
    """The source of the cell the user ran last."""
    inputs = _namespace().get("In")
    if not isinstance(inputs, list) or not inputs:
        return ""
    return str(inputs[-1])[:MAX_TEXT]
