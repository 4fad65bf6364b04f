// @ts-check
/** The names the two AudioWorklet processors register under. Internal module. */

export const CAPTURE_PROCESSOR = "ssw-capture-16k";
export const PLAYER_PROCESSOR = "pcm-player";
