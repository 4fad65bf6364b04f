"""Session settings and what each Live model accepts.

Internal module. :class:`SessionConfig` is what the user chose; :func:`live_connect_config`
turns it into the plain ``LiveConnectConfig`` dict for the chosen model, leaving out whatever
that model rejects (``gemini-3.8-live`` closes the connection with 1007 on a thinking config,
affective dialog or ``proactive_audio=False``). No SDK import here: the Gemini adapter
validates the dict into the SDK's types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

DEFAULT_MODEL: Final = "gemini-3.8-live"
DEFAULT_VOICE: Final = "Puck"
DEFAULT_SYSTEM_INSTRUCTION: Final = (
    "You are a helpful assistant looking at the user's shared screen while you talk with them. "
    "Answer aloud, briefly and concretely: say what you see when it matters, read out the exact "
    "text of errors or values the user asks about, and ask when the screen does not show "
    "enough. Do not describe the whole screen unless asked."
)

#: The 30 prebuilt Live voices (Chirp 3 HD).
VOICES: Final = frozenset(
    {
        "Zephyr", "Kore", "Orus", "Autonoe", "Umbriel", "Erinome", "Laomedeia", "Schedar",
        "Achird", "Sadachbia", "Puck", "Fenrir", "Aoede", "Enceladus", "Algieba", "Algenib",
        "Achernar", "Gacrux", "Zubenelgenubi", "Sadaltager", "Charon", "Leda", "Callirrhoe",
        "Iapetus", "Despina", "Rasalgethi", "Alnilam", "Pulcherrima", "Vindemiatrix", "Sulafat",
    }
)  # fmt: skip

MediaResolution = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class ModelProfile:
    """What one Live model accepts in its setup message."""

    name: str
    #: "budget" (thinking_budget), "level" (thinking_level) or None (no thinking config at all).
    thinking: Literal["budget", "level"] | None
    affective_dialog: bool
    #: "optional": proactive_audio may be set either way; "always": on, never send False;
    #: None: the model has no proactivity option.
    proactive_audio: Literal["optional", "always"] | None
    #: Whether the system instruction can be replaced mid-session (``contextUpdate``).
    context_update: bool
    #: Whether function calls can run while the model keeps talking (``NON_BLOCKING``
    #: declarations, responses scheduled ``WHEN_IDLE``).
    async_tools: bool = False


MODELS: Final[dict[str, ModelProfile]] = {
    p.name: p
    for p in (
        ModelProfile("gemini-3.8-live", None, False, "always", True, async_tools=True),
        ModelProfile(
            "gemini-3.8-live-extended-thinking", "level", False, "always", True, async_tools=True
        ),
        ModelProfile("gemini-3.1-flash-live-preview", "level", False, None, False),
        ModelProfile(
            "gemini-2.5-flash-native-audio-preview-12-2025", "budget", True, "optional", False
        ),
        ModelProfile(
            "gemini-2.5-flash-native-audio-preview-09-2025", "budget", True, "optional", False
        ),
        ModelProfile("gemini-live-2.5-flash-native-audio", "budget", True, "optional", False),
    )
}

#: Models not in :data:`MODELS` are treated like the default model: send nothing optional.
_UNKNOWN = ModelProfile("", None, False, None, False)


def model_profile(model: str) -> ModelProfile:
    """The profile of ``model`` (with or without the ``models/`` prefix)."""
    name = model.removeprefix("models/")
    return MODELS.get(name, _UNKNOWN)


@dataclass(frozen=True)
class SessionConfig:
    """What the user chose for a Live session. Every field has a sensible default."""

    model: str = DEFAULT_MODEL
    voice: str = DEFAULT_VOICE
    system_instruction: str = DEFAULT_SYSTEM_INSTRUCTION
    input_transcription: bool = True
    output_transcription: bool = True
    #: Context window compression (a sliding window); without it an audio+video session ends
    #: after about 2 minutes.
    compression: bool = True
    #: Ask the service for resumption handles, to survive connection ends.
    resumption: bool = True
    media_resolution: MediaResolution | None = None
    language_code: str | None = None
    temperature: float | None = None
    #: 2.5 models only: answer with emotional tone.
    affective_dialog: bool | None = None
    #: Models with optional proactivity: let the model decide not to answer.
    proactive_audio: bool | None = None
    #: Models with thinking: "minimal".."high" for level models, a token count for budget ones.
    thinking: str | int | None = None
    #: Function declarations of the tools (``FunctionDeclaration`` as plain dicts).
    tools: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("model must be a non-empty model name such as 'gemini-3.8-live'")
        if any(c in self.model for c in "?&") or ".." in self.model:
            raise ValueError(f"model {self.model!r} is not a valid model name")
        if self.voice not in VOICES:
            known = ", ".join(sorted(VOICES))
            raise ValueError(f"unknown voice {self.voice!r}; choose one of: {known}")
        if not isinstance(self.system_instruction, str):
            raise TypeError("system_instruction must be a string")
        if self.media_resolution not in (None, "low", "medium", "high"):
            raise ValueError("media_resolution must be 'low', 'medium', 'high' or None")


def live_connect_config(config: SessionConfig, resume_handle: str | None = None) -> dict[str, Any]:
    """The ``LiveConnectConfig`` (as a snake_case dict) for ``config`` on its model.

    Options the model would reject are left out, never sent: the service closes the whole
    connection on them. ``resume_handle`` resumes an earlier session.
    """
    profile = model_profile(config.model)
    speech: dict[str, Any] = {
        "voice_config": {"prebuilt_voice_config": {"voice_name": config.voice}}
    }
    if config.language_code:
        speech["language_code"] = config.language_code
    out: dict[str, Any] = {
        "response_modalities": ["AUDIO"],
        "speech_config": speech,
    }
    if config.system_instruction:
        out["system_instruction"] = config.system_instruction
    if config.input_transcription:
        out["input_audio_transcription"] = {}
    if config.output_transcription:
        out["output_audio_transcription"] = {}
    if config.compression:
        out["context_window_compression"] = {"sliding_window": {}}
    if config.resumption:
        out["session_resumption"] = {"handle": resume_handle} if resume_handle else {}
    if config.media_resolution:
        out["media_resolution"] = f"MEDIA_RESOLUTION_{config.media_resolution.upper()}"
    if config.temperature is not None:
        out["temperature"] = config.temperature
    if config.affective_dialog is not None and profile.affective_dialog:
        out["enable_affective_dialog"] = config.affective_dialog
    if config.proactive_audio is not None and _proactive_accepted(profile, config.proactive_audio):
        out["proactivity"] = {"proactive_audio": config.proactive_audio}
    if config.tools:
        out["tools"] = [{"function_declarations": [dict(d) for d in config.tools]}]
    if config.thinking is not None:
        if profile.thinking == "budget" and isinstance(config.thinking, int):
            out["thinking_config"] = {"thinking_budget": config.thinking}
        elif profile.thinking == "level" and isinstance(config.thinking, str):
            out["thinking_config"] = {"thinking_level": config.thinking.upper()}
    return out


def _proactive_accepted(profile: ModelProfile, value: bool) -> bool:
    return profile.proactive_audio == "optional" or (profile.proactive_audio == "always" and value)


def dropped_options(config: SessionConfig) -> list[str]:
    """The options in ``config`` that its model does not accept (so they are not sent)."""
    profile = model_profile(config.model)
    dropped = []
    if config.affective_dialog is not None and not profile.affective_dialog:
        dropped.append("affective_dialog")
    if config.proactive_audio is not None and not _proactive_accepted(
        profile, config.proactive_audio
    ):
        dropped.append("proactive_audio")
    if config.thinking is not None:
        kind = profile.thinking
        if kind is None or (kind == "budget") != isinstance(config.thinking, int):
            dropped.append("thinking")
    return dropped
