"""Which setups the emulated service accepts, and the close it answers the others with.

Internal module. The rules mirror the Live models' documented behaviour (see
``research/live-api-and-sdk.md`` §8 and §10): an unknown key closes with 1007, an unknown
model with 1008, and options a model rejects with 1007 "Request contains an invalid
argument.". Keys are accepted in either casing at every level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from .wire import has, pick

#: Models the emulator serves (ids without ``models/``): the Gemini API's Live models. The
#: product's table (``config.MODELS``) also knows :data:`VERTEX_ONLY_MODELS`, which the Gemini
#: API refuses like any unknown model, so the emulator does too; a test keeps the two tables
#: agreeing on everything else (this one is written apart on purpose: an oracle must not share
#: the product's table).
KNOWN_MODELS: Final[frozenset[str]] = frozenset(
    {
        "gemini-3.8-live",
        "gemini-3.8-live-extended-thinking",
        "gemini-3.1-flash-live-preview",
        "gemini-2.5-flash-native-audio-preview-12-2025",
        "gemini-2.5-flash-native-audio-preview-09-2025",
    }
)
#: Live models served on Vertex AI only (research: live-api-and-sdk.md, the model table).
VERTEX_ONLY_MODELS: Final[frozenset[str]] = frozenset({"gemini-live-2.5-flash-native-audio"})

#: Close code for a bad request (protobuf parse or argument error); "invalid frame payload".
CLOSE_INVALID: Final = 1007
#: Close code for a model that does not exist or does not support Live; "policy violation".
CLOSE_POLICY: Final = 1008
#: Close code for a server-side failure.
CLOSE_INTERNAL: Final = 1011

REASON_BAD_KEY: Final = "API key not valid. Please pass a valid API key."
REASON_INVALID_ARGUMENT: Final = "Request contains an invalid argument."
REASON_INVALID_JSON: Final = "Invalid JSON payload received."
REASON_INTERNAL: Final = "Internal error occurred."
#: The service's other 1011 reason (python-genai#985), used by a realistic emulator for a
#: refused resume (R9).
REASON_INTERNAL_ENCOUNTERED: Final = "Internal error encountered."
#: 1007 for an expired API key (R8: yagudaev/voiceclaw#155).
REASON_EXPIRED_KEY: Final = "API key expired. Please renew the API key."
#: The service's random mid-session 1008, often around tool calls (js-genai#1236,
#: livekit/agents#4545).
REASON_NOT_IMPLEMENTED: Final = "Operation is not implemented, or supported, or enabled."

#: Longest close reason a WebSocket close frame can carry (UTF-8 bytes, RFC 6455 §5.5).
MAX_REASON_BYTES: Final = 123

_PATH_RE: Final = re.compile(
    r"^(?:.*?/)?/*ws/+google\.ai\.generativelanguage\.(v1|v1beta|v1alpha)"
    r"\.GenerativeService\.BidiGenerateContent$"
)


@dataclass(frozen=True)
class Rejection:
    """How to close a connection whose setup is refused."""

    code: int
    reason: str


def close_reason(reason: str) -> str:
    """``reason`` cut to :data:`MAX_REASON_BYTES` of UTF-8, as the service cuts it.

    The service's long reasons (the 1008 "not found" one) arrive truncated mid-word, e.g.
    "... or is not supported for bidiGenerateContent. Call ListModels ".
    """
    return reason.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")


def api_version(path: str) -> str | None:
    """The API version of a Live endpoint path, or ``None`` if the path is not one.

    Any number of leading slashes and any prefix before ``/ws/`` are accepted (the SDK
    produces ``//ws/...`` from a base URL with a trailing slash); a query string is ignored.
    """
    match = _PATH_RE.match(path.split("?", 1)[0])
    return match.group(1) if match else None


def model_name(setup: dict[str, Any]) -> str:
    """The setup's model without its ``models/`` prefix ('' if absent)."""
    model = pick(setup, "model", "")
    if not isinstance(model, str):
        return ""
    return model.removeprefix("models/")


def _model_error(name: str, version: str) -> Rejection:
    # The full text; close() cuts it to what a close frame can carry.
    return Rejection(
        CLOSE_POLICY,
        f"models/{name} is not found for API version {version}, or is not supported for "
        "bidiGenerateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    )


def _option(setup: dict[str, Any], name: str) -> Any:
    """An option the SDK puts in ``generationConfig`` but the service also takes top-level."""
    generation = pick(setup, "generation_config")
    if has(generation, name):
        return pick(generation, name)
    return pick(setup, name)


def _has_option(setup: dict[str, Any], name: str) -> bool:
    return has(pick(setup, "generation_config"), name) or has(setup, name)


def _rejected_options(model: str, setup: dict[str, Any]) -> bool:
    """Whether ``model`` refuses one of the setup's options (1007 invalid argument)."""
    proactivity = pick(setup, "proactivity")
    proactive_off = has(proactivity, "proactive_audio") and (
        pick(proactivity, "proactive_audio") is False
    )
    affective = _has_option(setup, "enable_affective_dialog")
    if model.startswith("gemini-3"):
        modalities = _option(setup, "response_modalities")
        if modalities is not None and (
            not isinstance(modalities, list) or [str(m).upper() for m in modalities] != ["AUDIO"]
        ):
            return True
    if model == "gemini-3.8-live":
        return _has_option(setup, "thinking_config") or affective or proactive_off
    if model == "gemini-3.8-live-extended-thinking":
        return affective or proactive_off
    if model == "gemini-3.1-flash-live-preview":
        return affective or proactivity is not None
    return False


def check_setup(
    setup: Any,
    *,
    version: str,
    key: str | None,
    api_keys: frozenset[str] | None,
    expired_keys: frozenset[str] = frozenset(),
) -> Rejection | None:
    """Validate a setup in the service's order: key, then model, then options.

    ``key`` is the ``x-goog-api-key`` header (``None`` if absent); ``api_keys`` restricts
    the accepted keys (``None``: any non-empty key); a key in ``expired_keys`` closes with
    1007 :data:`REASON_EXPIRED_KEY`. Returns ``None`` if the setup is accepted. The key is
    compared, never stored or logged.
    """
    if key and key in expired_keys:
        return Rejection(CLOSE_INVALID, REASON_EXPIRED_KEY)
    if not key or (api_keys is not None and key not in api_keys):
        return Rejection(CLOSE_INVALID, REASON_BAD_KEY)
    if not isinstance(setup, dict):
        return Rejection(CLOSE_INVALID, REASON_INVALID_ARGUMENT)
    name = model_name(setup)
    if name not in KNOWN_MODELS:
        return _model_error(name, version)
    if _rejected_options(name, setup):
        return Rejection(CLOSE_INVALID, REASON_INVALID_ARGUMENT)
    return None
