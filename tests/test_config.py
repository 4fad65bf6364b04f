"""Session config per model: nothing a model rejects is ever sent."""

from __future__ import annotations

import pytest

from screenshare_widget.config import (
    DEFAULT_MODEL,
    SessionConfig,
    dropped_options,
    live_connect_config,
    model_profile,
)


def test_defaults_for_the_default_model() -> None:
    cfg = live_connect_config(SessionConfig())
    assert DEFAULT_MODEL == "gemini-3.8-live"
    assert cfg["response_modalities"] == ["AUDIO"]
    assert cfg["speech_config"] == {
        "voice_config": {"prebuilt_voice_config": {"voice_name": "Puck"}}
    }
    assert cfg["input_audio_transcription"] == {} and cfg["output_audio_transcription"] == {}
    assert cfg["context_window_compression"] == {"sliding_window": {}}
    assert cfg["session_resumption"] == {}
    assert cfg["system_instruction"]
    for rejected in ("thinking_config", "enable_affective_dialog", "proactivity"):
        assert rejected not in cfg


def test_38_never_gets_what_it_rejects() -> None:
    cfg = SessionConfig(affective_dialog=True, proactive_audio=False, thinking=0)
    out = live_connect_config(cfg)
    assert "thinking_config" not in out
    assert "enable_affective_dialog" not in out
    assert "proactivity" not in out
    assert dropped_options(cfg) == ["affective_dialog", "proactive_audio", "thinking"]
    # proactive audio on is the model's fixed behaviour, so it may be sent
    assert live_connect_config(SessionConfig(proactive_audio=True))["proactivity"] == {
        "proactive_audio": True
    }


def test_25_models_get_their_options() -> None:
    model = "gemini-2.5-flash-native-audio-preview-12-2025"
    cfg = SessionConfig(model=model, affective_dialog=True, proactive_audio=False, thinking=0)
    out = live_connect_config(cfg)
    assert out["enable_affective_dialog"] is True
    assert out["proactivity"] == {"proactive_audio": False}
    assert out["thinking_config"] == {"thinking_budget": 0}
    assert dropped_options(cfg) == []


def test_level_thinking_models() -> None:
    out = live_connect_config(SessionConfig(model="gemini-3.1-flash-live-preview", thinking="low"))
    assert out["thinking_config"] == {"thinking_level": "LOW"}
    assert "proactivity" not in live_connect_config(
        SessionConfig(model="gemini-3.1-flash-live-preview", proactive_audio=True)
    )


def test_resume_handle_and_switches() -> None:
    out = live_connect_config(SessionConfig(compression=False, resumption=True), "h-9")
    assert out["session_resumption"] == {"handle": "h-9"}
    assert "context_window_compression" not in out
    out = live_connect_config(
        SessionConfig(resumption=False, input_transcription=False, media_resolution="low")
    )
    assert "session_resumption" not in out and "input_audio_transcription" not in out
    assert out["media_resolution"] == "MEDIA_RESOLUTION_LOW"


def test_unknown_models_get_only_safe_options() -> None:
    assert model_profile("models/some-future-live").thinking is None
    out = live_connect_config(SessionConfig(model="some-future-live", thinking=3))
    assert "thinking_config" not in out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"voice": "Bob"}, "unknown voice 'Bob'"),
        ({"model": ""}, "model must be a non-empty"),
        ({"model": "../x"}, "not a valid model name"),
        ({"media_resolution": "ultra"}, "media_resolution"),
    ],
)
def test_bad_settings_are_rejected_clearly(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionConfig(**kwargs)  # type: ignore[arg-type]


def test_config_validates_in_the_sdk() -> None:
    from google.genai import types

    for model in ("gemini-3.8-live", "gemini-2.5-flash-native-audio-preview-12-2025"):
        cfg = SessionConfig(model=model, affective_dialog=True, thinking=0, language_code="en-US")
        types.LiveConnectConfig(**live_connect_config(cfg, "handle"))
