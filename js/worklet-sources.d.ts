// `import source from "./worklets/x.worklet.js?source"`: js/build.mjs bundles that worklet
// entry and hands its code over as a string.
declare module "*?source" {
  const source: string;
  export default source;
}
