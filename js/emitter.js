// @ts-check
/** A tiny topic emitter: `on` returns the function that unsubscribes. Internal module. */
export class Emitter {
  /** @type {Map<string, Set<(arg?: any) => void>>} */
  #topics = new Map();

  /**
   * @param {string} topic
   * @param {(arg?: any) => void} fn
   */
  on(topic, fn) {
    let set = this.#topics.get(topic);
    if (!set) this.#topics.set(topic, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  /**
   * @param {string} topic
   * @param {any} [arg]
   */
  emit(topic, arg) {
    for (const fn of [...(this.#topics.get(topic) ?? [])]) fn(arg);
  }
}
