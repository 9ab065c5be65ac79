/**
 * Test doubles for the dashboard modules: an EventSource, a clock with timers, event targets,
 * a fetch and a storage. None of them touches the network or real time.
 */

/** A fresh EventSource class per test, so instances never leak between tests. */
export function createFakeEventSource() {
  return class FakeEventSource {
    static instances = [];

    static get latest() {
      return FakeEventSource.instances.at(-1);
    }

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.closed = false;
      this.listeners = new Map();
      FakeEventSource.instances.push(this);
    }

    get query() {
      return new URL(this.url, 'http://dashboard.test').searchParams;
    }

    addEventListener(type, listener) {
      if (!this.listeners.has(type)) this.listeners.set(type, new Set());
      this.listeners.get(type).add(listener);
    }

    removeEventListener(type, listener) {
      this.listeners.get(type)?.delete(listener);
    }

    listenerCount() {
      let count = 0;
      for (const set of this.listeners.values()) count += set.size;
      return count;
    }

    close() {
      this.closed = true;
      this.readyState = 2;
    }

    /** The server answered 200: the stream is open. */
    open() {
      this.readyState = 1;
      this.#dispatch({ type: 'open' });
    }

    /** A named event; `data` objects are sent as JSON, strings as they are. */
    emit(type, data, id = '') {
      const text = typeof data === 'string' ? data : JSON.stringify(data);
      this.#dispatch({ type, data: text, lastEventId: id });
    }

    /** A refused request or a dropped stream: the browser only says "error". */
    fail() {
      this.readyState = 0;
      this.#dispatch({ type: 'error' });
    }

    #dispatch(event) {
      for (const listener of [...(this.listeners.get(event.type) ?? [])]) listener(event);
    }
  };
}

/** setTimeout/clearTimeout on a virtual clock that moves only when told to. */
export class FakeClock {
  nowMs = 0;
  #timers = new Map();
  #nextId = 1;

  constructor(startMs = 0) {
    this.nowMs = startMs;
  }

  setTimeout = (fn, ms = 0) => {
    const id = this.#nextId++;
    this.#timers.set(id, { fn, at: this.nowMs + ms, delayMs: ms });
    return id;
  };

  clearTimeout = (id) => {
    this.#timers.delete(id);
  };

  now = () => this.nowMs;

  get pendingCount() {
    return this.#timers.size;
  }

  /** Delays (as scheduled) of the timers still pending, soonest first. */
  get pendingDelays() {
    return [...this.#timers.values()].sort((a, b) => a.at - b.at).map((t) => t.delayMs);
  }

  /** Moves time forward, firing every timer that falls due, in order. */
  advance(ms) {
    const target = this.nowMs + ms;
    for (;;) {
      const due = [...this.#timers.entries()]
        .filter(([, t]) => t.at <= target)
        .sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      const [id, timer] = due;
      this.#timers.delete(id);
      this.nowMs = timer.at;
      timer.fn();
    }
    this.nowMs = target;
  }
}

/** An event target that counts its listeners (document, window). */
export class FakeTarget {
  listeners = new Map();

  addEventListener(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
  }

  removeEventListener(type, listener) {
    this.listeners.get(type)?.delete(listener);
  }

  listenerCount(type) {
    return this.listeners.get(type)?.size ?? 0;
  }

  dispatch(type) {
    for (const listener of [...(this.listeners.get(type) ?? [])]) listener({ type });
  }
}

/** A document whose visibility the test controls. */
export class FakeDocument extends FakeTarget {
  visibilityState = 'visible';

  get hidden() {
    return this.visibilityState !== 'visible';
  }

  setVisibility(state) {
    this.visibilityState = state;
    this.dispatch('visibilitychange');
  }
}

/** Lets pending promise callbacks run (the clock is fake, this one is real). */
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** An unsigned JWT with the given claims; base64url like the server's. */
export function makeJwt(claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}.signature`;
}

/** sessionStorage stand-in. */
export class MemoryStorage {
  #items = new Map();

  getItem(key) {
    return this.#items.has(key) ? this.#items.get(key) : null;
  }

  setItem(key, value) {
    this.#items.set(key, String(value));
  }

  removeItem(key) {
    this.#items.delete(key);
  }

  get length() {
    return this.#items.size;
  }
}

/** A JSON response the way fetch returns one. */
export function jsonResponse(status, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  return {
    ok: status >= 200 && status < 300,
    status,
    headers: { get: (name) => (name.toLowerCase() === 'content-type' ? 'application/json' : null) },
    text: async () => text,
  };
}

/**
 * A fetch that answers from a queue of handlers and records every call.
 * Each handler gets `(url, init)` and returns a response (or throws, like a network error).
 */
export function createFakeFetch(...handlers) {
  const queue = [...handlers];
  const calls = [];
  const fetchImpl = async (url, init = {}) => {
    calls.push({ url, init, body: init.body ? JSON.parse(init.body) : undefined });
    const handler = queue.shift();
    if (!handler) throw new Error(`unexpected fetch ${init.method ?? 'GET'} ${url}`);
    return handler(url, init);
  };
  fetchImpl.calls = calls;
  fetchImpl.remaining = () => queue.length;
  return fetchImpl;
}
