/**
 * Supervisor dashboard entry point: login and logout, the connection indicator, and routing
 * of stream events to the views.
 *
 * A check-in or check-out is shown at once from the event's data, and the affected list is
 * refetched as well (coalesced per list, 500 ms), so the server stays the one source of truth
 * and a missed detail heals itself. Activity events only refetch.
 *
 * Test hook: `window.__sseOptions = { baseDelayMs, maxAttempts }`, set before this module
 * loads (Playwright's `page.add_init_script`), shortens the reconnect backoff so browser tests
 * need not wait 31 s for the red indicator. Other keys are ignored; without it the defaults
 * (1 s, 2 s, 4 s, 8 s, 16 s; 5 attempts) apply.
 */

import { ApiClient } from './api-client.js';
import { createDebouncer } from './debouncer.js';
import { clearToasts, toast, toastError } from './dom.js';
import { createOfficeView } from './office-view.js';
import { createOgsView } from './ogs-view.js';
import { createRoomView } from './room-view.js';
import { SseClient } from './sse-client.js';

const REFRESH_DELAY_MS = 500;

const STATUS_LABELS = {
  idle: 'Verbindung wird aufgebaut …',
  connected: 'Verbunden',
  reconnecting: 'Verbindung wird wiederhergestellt …',
  failed: 'Verbindung fehlgeschlagen',
};

/** The backoff overrides of `window.__sseOptions` that are positive numbers (test hook). */
function backoffOverrides() {
  const options = window.__sseOptions ?? {};
  const picked = {};
  for (const key of ['baseDelayMs', 'maxAttempts']) {
    if (Number.isFinite(options[key]) && options[key] > 0) picked[key] = options[key];
  }
  return picked;
}

const ROOM_EVENTS = new Set(['student_checkin', 'student_checkout']);
const ACTIVITY_EVENTS = new Set(['activity_start', 'activity_end', 'activity_update']);
const OFFICE_EVENTS = new Set(['device_status', 'occupancy']);

/** Debugging hook (also read by browser tests). */
const dashboard = { sseStatus: 'idle', lastEventId: null };
window.__dashboard = dashboard;

const $ = (id) => document.getElementById(id);

const api = new ApiClient({
  onAuthLost: () => endSession('Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.'),
});
const refreshes = createDebouncer({ delayMs: REFRESH_DELAY_MS });
const rooms = createRoomView({ api, onGroupsChanged: () => refreshMe() });
const ogs = createOgsView({ api });
const office = createOfficeView({ api, schedule: (key, task, ms) => refreshes.schedule(key, task, ms) });
let stream = null;
let staffId = null; // whom the stream must belong to (the cookie is shared by all tabs)
let meTicket = 0;
let resumable = false; // a content event arrived, so a reconnect resumes from its id

// ---------- session ----------

async function login(event) {
  event.preventDefault();
  const email = $('login-email').value.trim();
  const password = $('login-password').value;
  if (!email || !password) {
    showLoginError('Bitte E-Mail und Passwort eingeben.');
    return;
  }
  const submit = $('login-form').querySelector('[type="submit"]');
  submit.disabled = true;
  submit.textContent = 'Anmelden …';
  showLoginError(null);
  try {
    await api.login(email, password);
    $('login-password').value = '';
    await openDashboard();
  } catch (err) {
    showLoginError(err.status === 401 ? 'E-Mail oder Passwort ist falsch.' : err.message);
  } finally {
    submit.disabled = false;
    submit.textContent = 'Anmelden';
  }
}

/** Loads /api/me, shows the dashboard and connects the stream. Throws when /api/me fails. */
async function openDashboard() {
  const me = await api.get('/api/me');
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  applyMe(me, { refreshAll: true });
  rooms.loadRooms();
  startStream();
}

/**
 * Back to the login screen: stream closed, timers cleared, tokens and data forgotten; the
 * server revokes the login's refresh token and drops the HttpOnly cookie (api.logout()).
 */
function endSession(message = null) {
  stopStream();
  refreshes.cancelAll();
  meTicket += 1;
  staffId = null;
  api.logout();
  rooms.clear();
  ogs.clear();
  office.clear();
  clearToasts();
  dashboard.lastEventId = null;
  resumable = false;
  $('staff-name').textContent = '';
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  showLoginError(message);
  $('login-email').focus();
}

function showLoginError(message) {
  const box = $('login-error');
  box.textContent = message ?? '';
  box.hidden = !message;
}

// ---------- data ----------

function applyMe(me, { refreshAll = false } = {}) {
  staffId = me?.id == null ? null : String(me.id);
  $('staff-name').textContent = me?.name ?? '';
  rooms.apply(Array.isArray(me?.active_groups) ? me.active_groups : [], { refreshAll });
  ogs.apply(Array.isArray(me?.ogs_groups) ? me.ogs_groups : [], { refreshAll });
  if (me?.admin) {
    if (refreshAll) office.show();
  } else {
    office.hide();
  }
}

async function refreshMe({ refreshAll = false } = {}) {
  const ticket = ++meTicket;
  try {
    const me = await api.get('/api/me');
    if (ticket === meTicket) applyMe(me, { refreshAll });
  } catch (err) {
    toastError(err, 'Daten konnten nicht geladen werden');
  }
}

/** Everything again: after `resync`, or a connection that could not resume. */
function refreshEverything() {
  refreshes.cancelAll();
  refreshMe({ refreshAll: true });
  rooms.loadRooms();
  office.refreshAll();
}

// ---------- stream ----------

function startStream() {
  stopStream();
  stream = new SseClient({
    ...backoffOverrides(),
    url: '/api/sse/events', // authenticated by the HttpOnly cookie: no token in the URL
    getToken: () => api.accessToken,
    getUserId: () => staffId,
    refreshToken: () => api.refresh(),
    onStatus: renderConnection,
    onEvent: routeEvent,
    onResync: () => {
      dashboard.lastEventId = stream?.lastEventId ?? dashboard.lastEventId;
      refreshEverything();
    },
    onError: (err) => {
      // The stream gave up for good: say why (a retry alone will not help).
      if (err.name === 'SseUnsupportedError' || err.final) toast(err.message, { kind: 'error' });
      else console.warn('Live-Verbindung:', err);
    },
  });
  renderConnection(stream.status);
  stream.start();
}

function stopStream() {
  stream?.stop();
  stream = null;
}

function renderConnection(status) {
  const indicator = $('connection-status');
  indicator.dataset.status = status;
  indicator.querySelector('.connection__label').textContent = STATUS_LABELS[status] ?? status;
  $('retry-button').hidden = status !== 'failed';
  dashboard.sseStatus = status;
}

function routeEvent(type, envelope, id) {
  dashboard.lastEventId = stream?.lastEventId ?? id ?? dashboard.lastEventId;
  if (type === 'connected') {
    // Nothing to resume from: whatever happened before this connection is unknown.
    if (!resumable) refreshEverything();
    return;
  }
  resumable = true;
  const groupId = envelope?.active_group_id == null ? null : String(envelope.active_group_id);
  if (ROOM_EVENTS.has(type)) {
    rooms.applyEvent(type, envelope);
    ogs.applyEvent(type, envelope);
    if (groupId && rooms.has(groupId)) {
      refreshes.schedule(`group:${groupId}`, () => rooms.refreshGroup(groupId));
    } else if (groupId && !envelope?.data?.ogs_group_id) {
      refreshes.schedule('me', () => refreshMe()); // a group we supervise but do not show yet
    }
    const ogsId = envelope?.data?.ogs_group_id == null ? null : String(envelope.data.ogs_group_id);
    if (ogsId && ogs.has(ogsId)) refreshes.schedule(`ogs:${ogsId}`, () => ogs.refreshRoster(ogsId));
  } else if (OFFICE_EVENTS.has(type)) {
    office.applyEvent(type, envelope);
  } else if (ACTIVITY_EVENTS.has(type)) {
    refreshes.schedule('me', () => refreshMe());
    refreshes.schedule('rooms', () => rooms.loadRooms());
    if (groupId && rooms.has(groupId)) {
      refreshes.schedule(`group:${groupId}`, () => rooms.refreshGroup(groupId));
    }
  }
}

// ---------- start ----------

$('login-form').addEventListener('submit', login);
$('logout-button').addEventListener('click', () => endSession());
$('retry-button').addEventListener('click', () => stream?.retry());

if (api.isLoggedIn) {
  $('login-view').hidden = true; // no flash of the login form while the session is checked
  openDashboard().catch((err) => {
    if (err.status !== 401) endSession(err.message);
  });
} else {
  $('login-view').hidden = false;
  $('login-email').focus();
}
