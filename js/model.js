// @ts-check
/**
 * The widget's synced state as the page sees it. Internal module; types only.
 */

/** @typedef {"idle"|"connecting"|"live"|"reconnecting"|"closing"|"error"} Status */

/**
 * Every trait ScreenShareAssistant syncs (kept in sync with screenshare_widget/widget.py;
 * tests/test_protocol_sync.py compares the names with the Python class's synced traits).
 * @typedef {object} Model
 * @property {Status} status
 * @property {string} error human sentence, "" if none
 * @property {string} backend e.g. "Gemini API" or "Local Live emulator: no API key is set"
 * @property {boolean} emulated
 * @property {string} model
 * @property {string} voice
 * @property {string} system_instruction the instruction box's text
 * @property {number} instruction_version the latest version of the system instruction
 * @property {number} instruction_applied the version the model has (0: none yet)
 * @property {string} recording the folder being recorded to, "" when not recording
 * @property {number} max_fps frames per second, clamped to at most LIMITS.max_fps
 * @property {number} max_size long side of a frame (px)
 * @property {number} jpeg_quality 0..1
 * @property {number} min_change changed screen fraction (0..1) that sends a frame
 * @property {number} heartbeat_s a frame goes this often on a still screen (s)
 * @property {string} media_resolution the kernel's setting (the page does not read it)
 * @property {boolean} video_paused no frames are sent while true
 * @property {number} volume the model's voice: a linear gain 0..1, applied in the page
 * @property {boolean} muted the model's voice is silent in the page while true
 * @property {number} audio_chunk_ms length of one microphone message (ms), from each Share
 * @property {number} tokens tokens reported so far (the meter)
 * @property {number} cost_usd estimated cost so far (USD), -1 without prices
 * @property {number} last_turn_tokens the last usage report's tokens
 * @property {number} projected_10min_tokens next 10 min at the recent turn rate, -1 unknown
 * @property {number} projected_10min_usd the same in USD, -1 unknown
 * @property {number} budget_tokens 0: none
 * @property {number} budget_usd 0: none
 * @property {number} live_since epoch seconds the session went live, 0 when not live
 * @property {string} connection how the last handover went: "", "resumed" or "fresh session"
 * @property {number} others_live other assistants of the same kernel with a session running
 */

/** @typedef {import("@anywidget/types").AnyModel<Model>} WidgetModel anywidget's model proxy */

export {};
