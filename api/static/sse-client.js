/**
 * The dashboard's connection to the event stream (`GET /api/sse/events`, contract §5).
 *
 * Authentication: the same-origin HttpOnly `access_token` cookie, which the browser sends
 * with the EventSource request by itself. No token ever goes into the stream's URL, so none
 * reaches a proxy's access or error log. Login and every refresh (`refreshToken`) set the
 * cookie, and a reconnect that needs a fresh token waits for that refresh to finish.
 * `getToken` (the access token kept by the page) only tells when the token is about to expire;
 * `getUserId` (optional) names whom the stream must belong to: the cookie is shared by every
 * tab of the browser, so after another login in another tab the `connected` frame may name
 * someone else, and the stream then refreshes this tab's login (which resets the cookie) and
 * reconnects. If the stream still belongs to someone else after that one refresh (the cookie
 * did not change: another tab keeps setting it, or the refresh failed), the status turns
 * `failed` with an `SseWrongUserError` whose `final` is true, instead of trying forever.
 *
 * A connection counts as successful (the reconnect attempts start again from one) only once
 * its `connected` frame names the expected user, not when the HTTP response merely opens.
 *
 * Intentional divergence from the browser's own reconnect: on every `error` this class closes
 * the native EventSource and opens a new one itself. Only a new connection can carry the last
 * event id and a refreshed cookie, and only our own timer gives the dashboard a bounded backoff
 * (1 s, 2 s, 4 s, 8 s, 16 s) and a final `failed` state.
 *
 * Statuses: `idle` (not yet open, or stopped) → `connected` → `reconnecting` → `failed`.
 */

/** Named events the server sends; `resync` goes to onResync, every other one to onEvent. */
export const EVENT_TYPES = Object.freeze([
  'connected',
  'student_checkin',
  'student_checkout',
  'activity_start',
  'activity_end',
  'activity_update',
  'device_status',
  'occupancy',
  'resync',
]);

export const STATUS = Object.freeze({
  IDLE: 'idle',
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting',
  FAILED: 'failed',
});

/** A token counts as expired this many milliseconds before its `exp`, for clock skew. */
export const TOKEN_EXPIRY_SKEW_MS = 5000;

/** Delay before reconnect attempt number `attempt` (1-based): base, 2×base, 4×base, … */
export function backoffDelay(attempt, baseDelayMs = 1000) {
  return baseDelayMs * 2 ** Math.max(0, attempt - 1);
}

/** The stream URL with a `last_event_id` query parameter added when there is one (no token). */
export function buildUrl(url, { lastEventId = null } = {}) {
  const params = new URLSearchParams();
  if (lastEventId !== null && lastEventId !== undefined && lastEventId !== '') {
    params.set('last_event_id', String(lastEventId));
  }
  const query = params.toString();
  if (!query) return url;
  const hashAt = url.indexOf('#');
  const base = hashAt === -1 ? url : url.slice(0, hashAt);
  const hash = hashAt === -1 ? '' : url.slice(hashAt);
  const joiner = base.includes('?') ? (base.endsWith('?') || base.endsWith('&') ? '' : '&') : '?';
  return `${base}${joiner}${query}${hash}`;
}

/** The claims of a JWT (base64url JSON, not verified), or null when it cannot be read. */
export function decodeJwtPayload(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length < 2 || !parts[1]) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return payload !== null && typeof payload === 'object' ? payload : null;
  } catch {
    return null;
  }
}

/** True when the token carries an `exp` that has passed (or passes within `skewMs`). */
export function isTokenExpired(token, nowMs = Date.now(), skewMs = TOKEN_EXPIRY_SKEW_MS) {
  const payload = decodeJwtPayload(token);
  if (!payload || typeof payload.exp !== 'number') return false;
  return payload.exp * 1000 <= nowMs + skewMs;
}

/** Raised (through onError) when an event's data is not JSON; the stream carries on. */
export class SseParseError extends Error {
  constructor(type, data, cause) {
    super(`Ereignis "${type}" enthält kein gültiges JSON: ${String(data).slice(0, 80)}`);
    this.name = 'SseParseError';
    this.type = type;
    this.data = data;
    this.cause = cause;
  }
}

/**
 * Reported (through onError) when the stream's cookie belongs to another login. `final` is
 * false for the first mismatch (the login is refreshed and the stream reconnects) and true
 * when it persists after that refresh (the status is then `failed`).
 */
export class SseWrongUserError extends Error {
  constructor(expected, actual, { final = false } = {}) {
    super(
      final
        ? `Live-Verbindung gehört auch nach erneuerter Anmeldung zu Benutzer ${actual}, erwartet ${expected}. ` +
            'Bitte abmelden und neu anmelden (in diesem Browser ist eine andere Anmeldung aktiv).'
        : `Live-Verbindung gehört zu Benutzer ${actual}, erwartet ${expected}; Anmeldung wird erneuert.`,
    );
    this.name = 'SseWrongUserError';
    this.expected = expected;
    this.actual = actual;
    this.final = final;
  }
}

/** Reported (through onError) when the browser has no EventSource. */
export class SseUnsupportedError extends Error {
  constructor() {
    super('Dieser Browser unterstützt keine Live-Verbindung (EventSource fehlt).');
    this.name = 'SseUnsupportedError';
  }
}

const noop = () => {};

export class SseClient {
  #url;
  #getToken;
  #getUserId;
  #refreshToken;
  #onStatus;
  #onEvent;
  #onResync;
  #onError;
  #EventSource;
  #setTimeout;
  #clearTimeout;
  #document;
  #window;
  #now;
  #maxAttempts;
  #baseDelayMs;

  #status = STATUS.IDLE;
  #source = null;
  #opened = false;
  #attempts = 0;
  #timer = null;
  #started = false;
  #refreshing = false;
  #generation = 0;
  #lastEventId = null;
  #wrongUserRefreshed = false;

  constructor({
    url = '/api/sse/events',
    getToken = () => null,
    getUserId = () => null,
    refreshToken = async () => false,
    onStatus = noop,
    onEvent = noop,
    onResync = noop,
    onError = noop,
    EventSourceImpl = globalThis.EventSource,
    setTimeout: setTimeoutImpl = (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: clearTimeoutImpl = (id) => globalThis.clearTimeout(id),
    documentRef = globalThis.document ?? null,
    windowRef = globalThis.window ?? null,
    now = () => Date.now(),
    maxAttempts = 5,
    baseDelayMs = 1000,
    lastEventId = null,
  } = {}) {
    this.#url = url;
    this.#getToken = getToken;
    this.#getUserId = getUserId;
    this.#refreshToken = refreshToken;
    this.#onStatus = onStatus;
    this.#onEvent = onEvent;
    this.#onResync = onResync;
    this.#onError = onError;
    this.#EventSource = EventSourceImpl;
    this.#setTimeout = setTimeoutImpl;
    this.#clearTimeout = clearTimeoutImpl;
    this.#document = documentRef;
    this.#window = windowRef;
    this.#now = now;
    this.#maxAttempts = maxAttempts;
    this.#baseDelayMs = baseDelayMs;
    this.#lastEventId = lastEventId === null || lastEventId === undefined ? null : String(lastEventId);
  }

  /** idle | connected | reconnecting | failed */
  get status() {
    return this.#status;
  }

  /** Id of the last event received; sent as `last_event_id` on every reconnect. */
  get lastEventId() {
    return this.#lastEventId;
  }

  /** Reconnect attempts made since the last `connected` frame of the expected user. */
  get attempts() {
    return this.#attempts;
  }

  /** Opens the stream and starts watching visibility and network. Calling it twice does nothing. */
  start() {
    if (this.#started) return;
    if (typeof this.#EventSource !== 'function') {
      this.#setStatus(STATUS.FAILED);
      this.#report(new SseUnsupportedError());
      return;
    }
    this.#started = true;
    this.#document?.addEventListener('visibilitychange', this.#handleVisibility);
    this.#window?.addEventListener('online', this.#handleOnline);
    this.#open();
  }

  /** Reconnects now with a fresh series of attempts (the "Erneut versuchen" button). */
  retry() {
    if (!this.#started) {
      this.start();
      return;
    }
    this.#reconnectNow();
  }

  /** Closes the stream, clears every timer and removes every listener. */
  stop() {
    this.#started = false;
    this.#generation += 1;
    this.#refreshing = false;
    this.#clearTimer();
    this.#closeSource();
    this.#document?.removeEventListener('visibilitychange', this.#handleVisibility);
    this.#window?.removeEventListener('online', this.#handleOnline);
    this.#attempts = 0;
    this.#wrongUserRefreshed = false;
    this.#setStatus(STATUS.IDLE);
  }

  #open() {
    this.#clearTimer();
    this.#closeSource();
    const url = buildUrl(this.#url, { lastEventId: this.#lastEventId });
    let source;
    try {
      source = new this.#EventSource(url);
    } catch (err) {
      this.#report(err);
      this.#scheduleReconnect({ refresh: false });
      return;
    }
    this.#source = source;
    this.#opened = false;
    source.addEventListener('open', this.#handleOpen);
    source.addEventListener('error', this.#handleError);
    for (const type of EVENT_TYPES) source.addEventListener(type, this.#handleMessage);
  }

  #closeSource() {
    const source = this.#source;
    if (!source) return;
    this.#source = null;
    this.#opened = false;
    source.removeEventListener('open', this.#handleOpen);
    source.removeEventListener('error', this.#handleError);
    for (const type of EVENT_TYPES) source.removeEventListener(type, this.#handleMessage);
    source.close();
  }

  #handleOpen = () => {
    // Attempts are reset only by the expected user's `connected` frame (#acceptConnected):
    // a stream that opens as someone else, or drops before saying whose it is, keeps counting.
    this.#opened = true;
    this.#setStatus(STATUS.CONNECTED);
  };

  #handleError = () => {
    // An EventSource reports neither the HTTP status nor the reason. A stream that never
    // opened was most likely refused (401 for a stale token); one that ran and ended with an
    // expired token was closed by the server at expiry. Both need a new token first.
    const neverOpened = !this.#opened;
    this.#closeSource();
    const expired = isTokenExpired(this.#getToken(), this.#now());
    this.#scheduleReconnect({ refresh: neverOpened || expired });
  };

  #handleMessage = (event) => {
    const type = event.type;
    if (event.lastEventId) this.#lastEventId = String(event.lastEventId);
    if (type === 'resync') {
      this.#call(this.#onResync);
      return;
    }
    let payload = null;
    if (event.data !== undefined && event.data !== null && event.data !== '') {
      try {
        payload = JSON.parse(event.data);
      } catch (err) {
        this.#report(new SseParseError(type, event.data, err));
        return;
      }
    }
    if (type === 'connected' && !this.#acceptConnected(payload)) return;
    this.#call(this.#onEvent, type, payload, event.lastEventId ? String(event.lastEventId) : null);
  };

  /** False (and the stream closed) when a `connected` frame names someone else. */
  #acceptConnected(payload) {
    if (!this.#isSomeoneElse(payload)) {
      this.#attempts = 0;
      this.#wrongUserRefreshed = false;
      return true;
    }
    const expected = String(this.#getUserId());
    const actual = String(payload.user_id);
    this.#closeSource();
    if (this.#wrongUserRefreshed) {
      // Refreshing did not give this tab its cookie back: stop instead of bouncing forever.
      this.#clearTimer();
      this.#setStatus(STATUS.FAILED);
      this.#report(new SseWrongUserError(expected, actual, { final: true }));
      return false;
    }
    // Another tab's login replaced the shared cookie: refresh ours, then reconnect.
    this.#wrongUserRefreshed = true;
    this.#report(new SseWrongUserError(expected, actual));
    this.#scheduleReconnect({ refresh: true });
    return false;
  }

  #isSomeoneElse(payload) {
    const expected = this.#getUserId();
    if (expected === null || expected === undefined || payload?.user_id === undefined) return false;
    return String(payload.user_id) !== String(expected);
  }

  #handleVisibility = () => {
    const doc = this.#document;
    const visible = doc?.visibilityState ? doc.visibilityState === 'visible' : !doc?.hidden;
    if (visible) this.#wake();
  };

  #handleOnline = () => {
    this.#wake();
  };

  /** Reconnect at once unless a stream is open or a connection attempt is under way. */
  #wake() {
    if (!this.#started || this.#source || this.#refreshing) return;
    this.#reconnectNow();
  }

  #reconnectNow() {
    this.#clearTimer();
    this.#closeSource();
    this.#generation += 1;
    this.#refreshing = false;
    this.#attempts = 0;
    this.#wrongUserRefreshed = false;
    if (this.#status === STATUS.FAILED) this.#setStatus(STATUS.RECONNECTING);
    this.#connect({ refresh: isTokenExpired(this.#getToken(), this.#now()) });
  }

  #scheduleReconnect({ refresh }) {
    if (this.#attempts >= this.#maxAttempts) {
      this.#setStatus(STATUS.FAILED);
      return;
    }
    this.#attempts += 1;
    const delayMs = backoffDelay(this.#attempts, this.#baseDelayMs);
    this.#setStatus(STATUS.RECONNECTING);
    this.#timer = this.#setTimeout(() => {
      this.#timer = null;
      this.#connect({ refresh });
    }, delayMs);
  }

  async #connect({ refresh }) {
    if (!refresh) {
      this.#open();
      return;
    }
    const generation = this.#generation;
    this.#refreshing = true;
    try {
      // A failed refresh still reconnects: the attempt then fails and the backoff goes on.
      await this.#refreshToken();
    } catch (err) {
      this.#report(err);
    }
    if (generation !== this.#generation) return; // stopped or restarted meanwhile
    this.#refreshing = false;
    this.#open();
  }

  #clearTimer() {
    if (this.#timer === null) return;
    this.#clearTimeout(this.#timer);
    this.#timer = null;
  }

  #setStatus(status) {
    if (status === this.#status) return;
    this.#status = status;
    this.#call(this.#onStatus, status);
  }

  #report(err) {
    try {
      this.#onError(err);
    } catch {
      // An error handler that throws must not break the connection logic.
    }
  }

  #call(callback, ...args) {
    try {
      callback(...args);
    } catch (err) {
      this.#report(err);
    }
  }
}
