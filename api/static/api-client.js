/**
 * HTTP access to the edge-bridge API (contract §4) for the dashboard.
 *
 * Keeps the access and refresh tokens in sessionStorage (one browser tab = one login), sends
 * `Authorization: Bearer …` on every call, and on a 401 refreshes the access token once
 * (one refresh at a time, shared by all callers) and repeats the call.
 *
 * Refresh tokens rotate: every refresh answers with the next one, which replaces the old one
 * (the server refuses a used one and then ends the whole login, so two refreshes must never
 * send the same token: hence the one shared refresh). Login and refresh also set the HttpOnly
 * `access_token` cookie the event stream authenticates with. `logout()` revokes the login on
 * the server (its refresh token) and drops the cookie.
 */

import { errorDetail } from './format.js';

const ACCESS_KEY = 'edge-bridge.access_token';
const REFRESH_KEY = 'edge-bridge.refresh_token';

/** A failed API call: `status` 0 means the server was not reached. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
  }
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class ApiClient {
  #fetch;
  #storage;
  #onAuthLost;
  #refreshing = null;

  constructor({
    fetchImpl = (...args) => globalThis.fetch(...args),
    storage = globalThis.sessionStorage,
    onAuthLost = () => {},
  } = {}) {
    this.#fetch = fetchImpl;
    this.#storage = storage;
    this.#onAuthLost = onAuthLost;
  }

  get accessToken() {
    return this.#storage.getItem(ACCESS_KEY);
  }

  get refreshToken() {
    return this.#storage.getItem(REFRESH_KEY);
  }

  get isLoggedIn() {
    return Boolean(this.accessToken);
  }

  /** POST /api/auth/login; keeps the tokens. Throws ApiError (401 for wrong credentials). */
  async login(email, password) {
    const body = await this.#send('/api/auth/login', { method: 'POST', body: { email, password } });
    this.#storeTokens(body);
    return body;
  }

  /**
   * Forgets the tokens at once, then asks the server to revoke the login's refresh token and
   * drop the HttpOnly cookie (out of reach of scripts). Resolves when the server answered or
   * could not be reached; never throws.
   */
  async logout() {
    const refreshToken = this.refreshToken;
    this.#forget();
    try {
      await this.#send('/api/auth/logout', {
        method: 'POST',
        body: refreshToken ? { refresh_token: refreshToken } : undefined,
      });
    } catch {
      // Offline or already revoked: the tokens are gone here, the rest expires by itself.
    }
  }

  #forget() {
    this.#storage.removeItem(ACCESS_KEY);
    this.#storage.removeItem(REFRESH_KEY);
  }

  /**
   * POST /api/auth/refresh. True when a new access token was stored. A refused refresh token
   * (401/403) ends the login: tokens are dropped and onAuthLost is called.
   */
  refresh() {
    this.#refreshing ??= this.#refreshOnce().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  async #refreshOnce() {
    const refreshToken = this.refreshToken;
    if (!refreshToken) return false;
    try {
      const body = await this.#send('/api/auth/refresh', {
        method: 'POST',
        body: { refresh_token: refreshToken },
      });
      this.#storeTokens(body);
      return Boolean(body?.access_token);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        this.#loseAuth();
      }
      return false;
    }
  }

  get(path) {
    return this.request(path);
  }

  post(path, body) {
    return this.request(path, { method: 'POST', body });
  }

  /** An authenticated call; the parsed JSON body, or null for an empty one. */
  async request(path, { method = 'GET', body } = {}) {
    try {
      return await this.#send(path, { method, body, auth: true });
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
      if (!(await this.refresh())) {
        // Without a refresh token the login is over; a refresh that merely could not reach
        // the server keeps the login for the next try.
        if (!this.refreshToken) this.#loseAuth();
        throw err;
      }
    }
    try {
      return await this.#send(path, { method, body, auth: true });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) this.#loseAuth();
      throw err;
    }
  }

  async #send(path, { method = 'GET', body, auth = false }) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const token = this.accessToken;
    if (auth && token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await this.#fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
      });
    } catch {
      throw new ApiError(0, 'Der Server ist nicht erreichbar. Bitte Netzwerk prüfen.');
    }
    const data = await readBody(response);
    if (!response.ok) throw new ApiError(response.status, errorDetail(data, response.status));
    return data;
  }

  #storeTokens(body) {
    if (body?.access_token) this.#storage.setItem(ACCESS_KEY, body.access_token);
    if (body?.refresh_token) this.#storage.setItem(REFRESH_KEY, body.refresh_token);
  }

  #loseAuth() {
    const hadLogin = this.isLoggedIn || Boolean(this.refreshToken);
    this.#forget();
    if (hadLogin) this.#onAuthLost();
  }
}

/**
 * Drops answers that arrive out of order: only the newest request per key may render.
 * Tickets grow across `reset()`, so an answer from before a logout never matches again.
 */
export class RequestTracker {
  #counter = 0;
  #latest = new Map();

  issue(key) {
    this.#counter += 1;
    this.#latest.set(key, this.#counter);
    return this.#counter;
  }

  isCurrent(key, ticket) {
    return this.#latest.get(key) === ticket;
  }

  reset() {
    this.#latest.clear();
  }
}
