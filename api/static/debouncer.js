/**
 * Keyed, coalescing delays: many requests for the same key within `delayMs` run the task once.
 *
 * Intentional divergence from a classic debounce: the timer is not pushed back by later calls,
 * so a steady stream of events (a class checking in) still refreshes at least every `delayMs`.
 * The task that runs is the latest one passed for its key.
 */

export function createDebouncer({
  delayMs = 500,
  setTimeout: setTimeoutImpl = (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: clearTimeoutImpl = (id) => globalThis.clearTimeout(id),
} = {}) {
  const pending = new Map(); // key → { timer, task }

  function schedule(key, task, ms = delayMs) {
    const entry = pending.get(key);
    if (entry) {
      entry.task = task;
      return;
    }
    const fresh = { task, timer: null };
    fresh.timer = setTimeoutImpl(() => {
      pending.delete(key);
      fresh.task();
    }, ms);
    pending.set(key, fresh);
  }

  function cancel(key) {
    const entry = pending.get(key);
    if (!entry) return;
    clearTimeoutImpl(entry.timer);
    pending.delete(key);
  }

  function cancelAll() {
    for (const key of [...pending.keys()]) cancel(key);
  }

  return {
    schedule,
    cancel,
    cancelAll,
    has: (key) => pending.has(key),
    get size() {
      return pending.size;
    },
  };
}
