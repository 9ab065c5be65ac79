/**
 * Tests for api/static/api-client.js: tokens, bearer header, refresh on 401, error details.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ApiClient, ApiError, RequestTracker } from '../../api/static/api-client.js';
import { createFakeFetch, jsonResponse, MemoryStorage } from './fakes.mjs';

const TOKENS = { access_token: 'access-1', refresh_token: 'refresh-1', token_type: 'bearer', expires_in: 900 };

function setup(...handlers) {
  const fetchImpl = createFakeFetch(...handlers);
  const storage = new MemoryStorage();
  const lost = [];
  const client = new ApiClient({ fetchImpl, storage, onAuthLost: () => lost.push(true) });
  return { client, fetchImpl, storage, lost };
}

async function loggedIn(...handlers) {
  const ctx = setup(() => jsonResponse(200, TOKENS), ...handlers);
  await ctx.client.login('schmidt@example.org', 'geheim');
  return ctx;
}

test('login posts email and password as json and keeps both tokens', async () => {
  const { client, fetchImpl } = setup(() => jsonResponse(200, TOKENS));
  await client.login('schmidt@example.org', 'geheim');
  const [call] = fetchImpl.calls;
  assert.equal(call.url, '/api/auth/login');
  assert.equal(call.init.method, 'POST');
  assert.equal(call.init.headers['Content-Type'], 'application/json');
  assert.deepEqual(call.body, { email: 'schmidt@example.org', password: 'geheim' });
  assert.equal(client.accessToken, 'access-1');
  assert.equal(client.refreshToken, 'refresh-1');
});

test('a refused login throws the server detail and stores nothing', async () => {
  const { client } = setup(() => jsonResponse(401, { detail: 'E-Mail oder Passwort falsch' }));
  await assert.rejects(client.login('a@b.c', 'x'), { status: 401, detail: 'E-Mail oder Passwort falsch' });
  assert.equal(client.isLoggedIn, false);
});

test('api calls send the access token as a bearer header', async () => {
  const { client, fetchImpl } = await loggedIn(() => jsonResponse(200, { id: '1' }));
  const me = await client.get('/api/me');
  assert.deepEqual(me, { id: '1' });
  assert.equal(fetchImpl.calls[1].init.headers.Authorization, 'Bearer access-1');
});

test('a 401 refreshes the token once and repeats the call with the new token', async () => {
  const { client, fetchImpl } = await loggedIn(
    () => jsonResponse(401, { detail: 'Token expired' }),
    () => jsonResponse(200, { ...TOKENS, access_token: 'access-2', refresh_token: 'refresh-2' }),
    () => jsonResponse(200, []),
  );
  assert.deepEqual(await client.get('/api/rooms'), []);
  const [, , refresh, retry] = fetchImpl.calls;
  assert.equal(refresh.url, '/api/auth/refresh');
  assert.deepEqual(refresh.body, { refresh_token: 'refresh-1' });
  assert.equal(refresh.init.credentials, 'same-origin'); // its Set-Cookie renews the stream's cookie
  assert.equal(retry.init.headers.Authorization, 'Bearer access-2');
  assert.equal(client.refreshToken, 'refresh-2'); // rotated: the used one is never sent again
});

test('the next refresh sends the rotated refresh token', async () => {
  const { client, fetchImpl } = await loggedIn(
    () => jsonResponse(200, { ...TOKENS, access_token: 'access-2', refresh_token: 'refresh-2' }),
    () => jsonResponse(200, { ...TOKENS, access_token: 'access-3', refresh_token: 'refresh-3' }),
  );
  assert.equal(await client.refresh(), true);
  assert.equal(await client.refresh(), true);
  assert.deepEqual(
    fetchImpl.calls.slice(1).map((call) => call.body.refresh_token),
    ['refresh-1', 'refresh-2'],
  );
  assert.equal(client.accessToken, 'access-3');
});

test('concurrent refreshes share one request', async () => {
  let release;
  const { client, fetchImpl } = await loggedIn(
    () => new Promise((resolve) => (release = () => resolve(jsonResponse(200, { access_token: 'access-2' })))),
  );
  const first = client.refresh();
  const second = client.refresh();
  release();
  assert.deepEqual(await Promise.all([first, second]), [true, true]);
  assert.equal(fetchImpl.calls.length, 2);
});

test('a refused refresh token ends the login and reports it once', async () => {
  const { client, lost } = await loggedIn(
    () => jsonResponse(401, { detail: 'Token expired' }),
    () => jsonResponse(401, { detail: 'Refresh token expired' }),
  );
  await assert.rejects(client.get('/api/me'), { status: 401 });
  assert.equal(client.isLoggedIn, false);
  assert.equal(lost.length, 1);
});

test('a refresh that cannot reach the server keeps the login', async () => {
  const { client, lost } = await loggedIn(
    () => {
      throw new TypeError('Failed to fetch');
    },
  );
  assert.equal(await client.refresh(), false);
  assert.equal(client.isLoggedIn, true);
  assert.equal(lost.length, 0);
});

test('a failed call throws an api error carrying status and detail', async () => {
  const { client } = await loggedIn(() => jsonResponse(409, { detail: 'Raum ist bereits belegt' }));
  const error = await client.post('/api/active/groups', { name: 'Fußball AG', room_id: '1' }).catch((e) => e);
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 409);
  assert.equal(error.message, 'Raum ist bereits belegt');
});

test('a network failure becomes an api error with status zero', async () => {
  const { client } = await loggedIn(() => {
    throw new TypeError('Failed to fetch');
  });
  await assert.rejects(client.get('/api/me'), { status: 0 });
});

test('an empty success body is returned as null', async () => {
  const { client } = await loggedIn(() => jsonResponse(204, undefined));
  assert.equal(await client.post('/api/active/groups/123/end'), null);
});

test('logout forgets both tokens at once and has the server revoke the refresh token', async () => {
  const { client, storage, fetchImpl } = await loggedIn(() => jsonResponse(204, undefined));
  const done = client.logout();
  assert.equal(client.isLoggedIn, false);
  assert.equal(storage.length, 0);
  await done;
  const call = fetchImpl.calls.at(-1);
  assert.equal(call.url, '/api/auth/logout');
  assert.equal(call.init.method, 'POST');
  assert.deepEqual(call.body, { refresh_token: 'refresh-1' });
  assert.equal(call.init.credentials, 'same-origin'); // so the server can drop the cookie
});

test('a logout that cannot reach the server still forgets the tokens and does not throw', async () => {
  const { client, storage } = await loggedIn(() => {
    throw new TypeError('Failed to fetch');
  });
  await client.logout();
  assert.equal(storage.length, 0);
});

test('only the newest request per key counts as current', () => {
  const tracker = new RequestTracker();
  const first = tracker.issue('group:123');
  const second = tracker.issue('group:123');
  const other = tracker.issue('ogs:7');
  assert.equal(tracker.isCurrent('group:123', first), false);
  assert.equal(tracker.isCurrent('group:123', second), true);
  assert.equal(tracker.isCurrent('ogs:7', other), true);
});

test('after a reset no earlier ticket is current, even for a new request', () => {
  const tracker = new RequestTracker();
  const before = tracker.issue('me');
  tracker.reset();
  assert.equal(tracker.isCurrent('me', before), false);
  const after = tracker.issue('me');
  assert.notEqual(after, before);
  assert.equal(tracker.isCurrent('me', before), false);
});
