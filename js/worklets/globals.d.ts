// The AudioWorkletGlobalScope the two worklets run in (TypeScript's DOM library lacks it).

declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: AudioWorkletNodeOptions);
}
declare function registerProcessor(
  name: string,
  processor: new (options: AudioWorkletNodeOptions) => AudioWorkletProcessor,
): void;
/** The audio frame of the quantum being rendered. */
declare var currentFrame: number;
/** The context's sample rate (Hz). */
declare var sampleRate: number;
