/**
 * Tests for api/static/sse-client.js: connection, events, backoff, resume, token refresh, cleanup.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  backoffDelay,
  buildUrl,
  decodeJwtPayload,
  EVENT_TYPES,
  isTokenExpired,
  SseClient,
  SseParseError,
  SseUnsupportedError,
} from '../../api/static/sse-client.js';
import {
  createFakeEventSource,
  FakeClock,
  FakeDocument,
  FakeTarget,
  flush,
  makeJwt,
} from './fakes.mjs';

const NOW_MS = Date.UTC(2026, 10, 26, 13, 30);
const NOW_S = NOW_MS / 1000;

/** A client wired to fakes, plus everything a test wants to look at. */
function setup(overrides = {}) {
  const EventSource = createFakeEventSource();
  const clock = new FakeClock(NOW_MS);
  const documentRef = new FakeDocument();
  const windowRef = new FakeTarget();
  const statuses = [];
  const events = [];
  const errors = [];
  const resyncs = [];
  const refreshCalls = [];
  let token = overrides.token ?? makeJwt({ sub: '1', exp: NOW_S + 900 });
  const client = new SseClient({
    url: '/api/sse/events',
    getToken: () => token,
    refreshToken: async () => {
      refreshCalls.push(clock.now());
      return overrides.refreshToken ? overrides.refreshToken() : false;
    },
    onStatus: (status) => statuses.push(status),
    onEvent: (type, envelope, id) => events.push({ type, envelope, id }),
    onResync: () => resyncs.push(clock.now()),
    onError: (err) => errors.push(err),
    EventSourceImpl: EventSource,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    documentRef,
    windowRef,
    now: clock.now,
    ...overrides.options,
  });
  return {
    client,
    EventSource,
    clock,
    documentRef,
    windowRef,
    statuses,
    events,
    errors,
    resyncs,
    refreshCalls,
    setToken: (value) => {
      token = value;
    },
    get source() {
      return EventSource.latest;
    },
  };
}

/** Lets the current source fail `times` times in a row, firing each backoff timer. */
async function failAttempts(ctx, times) {
  for (let i = 0; i < times; i += 1) {
    ctx.source.fail();
    const [delay] = ctx.clock.pendingDelays;
    if (delay === undefined) return;
    ctx.clock.advance(delay);
    await flush();
  }
}

describe('pure helpers', () => {
  test('backoff delays are 1, 2, 4, 8 and 16 seconds for attempts one to five', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((attempt) => backoffDelay(attempt)),
      [1000, 2000, 4000, 8000, 16000],
    );
  });

  test('backoff delay scales with the base delay', () => {
    assert.equal(backoffDelay(3, 250), 1000);
  });

  test('build url adds the last event id as an encoded query parameter and never a token', () => {
    const url = buildUrl('/api/sse/events', { token: 'a.b+c', lastEventId: '4 2' });
    const params = new URL(url, 'http://x').searchParams;
    assert.ok(url.startsWith('/api/sse/events?'));
    assert.equal(params.get('last_event_id'), '4 2');
    assert.equal(params.get('token'), null);
    assert.ok(!url.includes('a.b'));
  });

  test('build url keeps an existing query string and appends with an ampersand', () => {
    assert.equal(buildUrl('/s?x=1', { lastEventId: '7' }), '/s?x=1&last_event_id=7');
  });

  test('build url leaves the url alone when there is no event id', () => {
    assert.equal(buildUrl('/api/sse/events', { lastEventId: null }), '/api/sse/events');
  });

  test('decoding a jwt reads a base64url payload including non-ascii text', () => {
    // This name produces '-' and '_' in base64url, which plain atob would reject.
    const token = makeJwt({ sub: '1', name: 'Jürgen ÿÿÿ?>~~', exp: 123 });
    assert.match(token.split('.')[1], /-/);
    assert.match(token.split('.')[1], /_/);
    assert.deepEqual(decodeJwtPayload(token), { sub: '1', name: 'Jürgen ÿÿÿ?>~~', exp: 123 });
  });

  test('decoding a jwt returns null for anything that is not one', () => {
    assert.equal(decodeJwtPayload('not-a-token'), null);
    assert.equal(decodeJwtPayload('a.%%%.c'), null);
    assert.equal(decodeJwtPayload(null), null);
  });

  test('a token counts as expired once its exp has passed, within the skew', () => {
    assert.equal(isTokenExpired(makeJwt({ exp: NOW_S - 1 }), NOW_MS), true);
    assert.equal(isTokenExpired(makeJwt({ exp: NOW_S + 2 }), NOW_MS), true);
    assert.equal(isTokenExpired(makeJwt({ exp: NOW_S + 60 }), NOW_MS), false);
  });

  test('a missing or unreadable token does not count as expired', () => {
    assert.equal(isTokenExpired(null, NOW_MS), false);
    assert.equal(isTokenExpired(makeJwt({ sub: '1' }), NOW_MS), false);
    assert.equal(isTokenExpired('opaque', NOW_MS), false);
  });
});

describe('initial connection', () => {
  test('start opens one event source at the bare stream url: the cookie authenticates it', () => {
    const ctx = setup();
    ctx.client.start();
    assert.equal(ctx.EventSource.instances.length, 1);
    assert.equal(ctx.source.url, '/api/sse/events');
    assert.equal(ctx.source.query.get('token'), null);
  });

  test('the status stays idle until the stream opens, then becomes connected', () => {
    const ctx = setup();
    ctx.client.start();
    assert.equal(ctx.client.status, 'idle');
    ctx.source.open();
    assert.equal(ctx.client.status, 'connected');
    assert.deepEqual(ctx.statuses, ['connected']);
  });

  test('calling start twice opens only one event source', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.client.start();
    assert.equal(ctx.EventSource.instances.length, 1);
  });

  test('a configured initial last event id is sent on the first connection', () => {
    const ctx = setup({ options: { lastEventId: 17 } });
    ctx.client.start();
    assert.equal(ctx.source.query.get('last_event_id'), '17');
  });
});

describe('events', () => {
  test('every named event type is delivered with its parsed envelope and id', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    const named = EVENT_TYPES.filter((type) => type !== 'resync');
    named.forEach((type, index) => {
      ctx.source.emit(type, { type, active_group_id: '123', data: { student_id: '456' } }, `${index + 1}`);
    });
    assert.deepEqual(
      ctx.events.map((e) => e.type),
      [
        'connected',
        'student_checkin',
        'student_checkout',
        'activity_start',
        'activity_end',
        'activity_update',
        'device_status',
        'occupancy',
      ],
    );
    assert.deepEqual(ctx.events[1], {
      type: 'student_checkin',
      envelope: { type: 'student_checkin', active_group_id: '123', data: { student_id: '456' } },
      id: '2',
    });
  });

  test('the connected event is delivered with its status payload', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.emit('connected', { status: 'ready', user_id: '1', subscribed_groups: ['123'] });
    assert.deepEqual(ctx.events, [
      { type: 'connected', envelope: { status: 'ready', user_id: '1', subscribed_groups: ['123'] }, id: null },
    ]);
  });

  test('a resync event calls on resync and is not passed to on event', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.emit('resync', { type: 'resync' }, '99');
    assert.equal(ctx.resyncs.length, 1);
    assert.deepEqual(ctx.events, []);
    assert.equal(ctx.client.lastEventId, '99');
  });

  test('unparseable event data is reported through on error and later events still arrive', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.emit('student_checkin', '{not json', '5');
    ctx.source.emit('student_checkout', { type: 'student_checkout' }, '6');
    assert.equal(ctx.errors.length, 1);
    assert.ok(ctx.errors[0] instanceof SseParseError);
    assert.equal(ctx.errors[0].type, 'student_checkin');
    assert.deepEqual(ctx.events.map((e) => e.id), ['6']);
    assert.equal(ctx.source.closed, false);
    assert.equal(ctx.client.status, 'connected');
  });

  test('an exception thrown by on event is reported and does not stop later events', () => {
    const ctx = setup();
    let calls = 0;
    const client = new SseClient({
      EventSourceImpl: ctx.EventSource,
      setTimeout: ctx.clock.setTimeout,
      clearTimeout: ctx.clock.clearTimeout,
      documentRef: null,
      windowRef: null,
      onEvent: () => {
        calls += 1;
        throw new Error('render failed');
      },
      onError: (err) => ctx.errors.push(err),
    });
    client.start();
    ctx.source.open();
    ctx.source.emit('student_checkin', {}, '1');
    ctx.source.emit('student_checkin', {}, '2');
    assert.equal(calls, 2);
    assert.deepEqual(ctx.errors.map((e) => e.message), ['render failed', 'render failed']);
  });
});

describe('reconnecting with backoff', () => {
  test('a dropped stream closes the source, reports reconnecting and retries after one second', () => {
    const ctx = setup();
    ctx.client.start();
    const first = ctx.source;
    first.open();
    first.fail();
    assert.equal(first.closed, true);
    assert.equal(ctx.client.status, 'reconnecting');
    assert.deepEqual(ctx.clock.pendingDelays, [1000]);
    ctx.clock.advance(999);
    assert.equal(ctx.EventSource.instances.length, 1);
    ctx.clock.advance(1);
    assert.equal(ctx.EventSource.instances.length, 2);
  });

  test('consecutive failed attempts wait 1, 2, 4, 8 and 16 seconds', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    const delays = [];
    for (let i = 0; i < 5; i += 1) {
      ctx.source.fail();
      delays.push(...ctx.clock.pendingDelays);
      ctx.clock.advance(ctx.clock.pendingDelays[0]);
      await flush();
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000]);
  });

  test('the status turns failed only once the fifth attempt has failed', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    await failAttempts(ctx, 5); // the drop plus attempts one to four
    assert.equal(ctx.client.status, 'reconnecting');
    assert.equal(ctx.client.attempts, 5);
    assert.equal(ctx.EventSource.instances.length, 6);
    ctx.source.fail(); // attempt five fails
    assert.equal(ctx.client.status, 'failed');
    assert.equal(ctx.clock.pendingCount, 0);
    ctx.clock.advance(60_000);
    await flush();
    assert.equal(ctx.EventSource.instances.length, 6);
  });

  test('status changes are reported once each: connected, reconnecting, failed', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    await failAttempts(ctx, 6);
    assert.deepEqual(ctx.statuses, ['connected', 'reconnecting', 'failed']);
  });

  test('a connection that never opens goes from idle to reconnecting', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.fail();
    assert.deepEqual(ctx.statuses, ['reconnecting']);
    assert.deepEqual(ctx.clock.pendingDelays, [1000]);
  });

  test('a connected frame resets the attempts so the next drop waits one second again', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    await failAttempts(ctx, 3);
    assert.equal(ctx.client.attempts, 3);
    ctx.source.open();
    assert.equal(ctx.client.attempts, 3); // open alone says nothing about whose stream it is
    ctx.source.emit('connected', { status: 'ready', user_id: '1' });
    assert.equal(ctx.client.attempts, 0);
    assert.equal(ctx.client.status, 'connected');
    ctx.source.fail();
    assert.deepEqual(ctx.clock.pendingDelays, [1000]);
  });

  test('streams that open and drop before their connected frame still end in failed', async () => {
    const ctx = setup();
    ctx.client.start();
    for (let i = 0; i < 6; i += 1) {
      ctx.source.open();
      ctx.source.fail();
      const [delay] = ctx.clock.pendingDelays;
      if (delay === undefined) break;
      ctx.clock.advance(delay);
      await flush();
    }
    assert.equal(ctx.client.status, 'failed');
    assert.equal(ctx.EventSource.instances.length, 6);
  });

  test('an event source constructor that throws is reported and retried with backoff', () => {
    const ctx = setup();
    let calls = 0;
    class ThrowingEventSource extends ctx.EventSource {
      constructor(url) {
        calls += 1;
        if (calls === 1) throw new SyntaxError('bad url');
        super(url);
      }
    }
    const client = new SseClient({
      EventSourceImpl: ThrowingEventSource,
      setTimeout: ctx.clock.setTimeout,
      clearTimeout: ctx.clock.clearTimeout,
      documentRef: null,
      windowRef: null,
      onError: (err) => ctx.errors.push(err),
    });
    client.start();
    assert.equal(ctx.errors[0].message, 'bad url');
    assert.equal(client.status, 'reconnecting');
    ctx.clock.advance(1000);
    assert.equal(ctx.EventSource.instances.length, 1);
  });
});

describe('resuming from the last event id', () => {
  test('every reconnect carries the id of the last event received', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.emit('student_checkin', { type: 'student_checkin' }, '41');
    ctx.source.emit('student_checkout', { type: 'student_checkout' }, '42');
    ctx.source.fail();
    ctx.clock.advance(1000);
    assert.equal(ctx.source.query.get('last_event_id'), '42');
    assert.equal(ctx.client.lastEventId, '42');
    ctx.source.fail(); // a failed attempt keeps the id for the next one
    ctx.clock.advance(2000);
    await flush();
    assert.equal(ctx.source.query.get('last_event_id'), '42');
  });

  test('an event whose data cannot be parsed still advances the last event id', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.emit('student_checkin', 'oops', '8');
    assert.equal(ctx.client.lastEventId, '8');
  });
});

describe('token refresh', () => {
  test('a stream that ends with an expired token refreshes (the cookie) before reconnecting', async () => {
    const fresh = makeJwt({ sub: '1', exp: NOW_S + 1800 });
    let ctx = null;
    ctx = setup({
      token: makeJwt({ sub: '1', exp: NOW_S + 60 }),
      refreshToken: () => {
        assert.equal(ctx.EventSource.instances.length, 1, 'refresh happens before the new source');
        ctx.setToken(fresh);
        return true;
      },
    });
    ctx.client.start();
    ctx.source.open();
    ctx.clock.advance(61_000); // the token expires, the server ends the stream
    ctx.source.fail();
    ctx.clock.advance(1000);
    await flush();
    assert.equal(ctx.refreshCalls.length, 1);
    assert.equal(ctx.EventSource.instances.length, 2);
    assert.equal(ctx.source.url, '/api/sse/events');
    assert.ok(!ctx.EventSource.instances.some((source) => source.url.includes(fresh)));
  });

  test('a dropped stream with a valid token reconnects without refreshing', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.fail();
    ctx.clock.advance(1000);
    await flush();
    assert.equal(ctx.refreshCalls.length, 0);
    assert.equal(ctx.EventSource.instances.length, 2);
  });

  test('a connection that never opened refreshes the token even when it looks valid', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.fail(); // e.g. 401: the server no longer accepts the token
    ctx.clock.advance(1000);
    await flush();
    assert.equal(ctx.refreshCalls.length, 1);
    assert.equal(ctx.EventSource.instances.length, 2);
  });

  test('a failed refresh still reconnects on the backoff schedule', async () => {
    const ctx = setup({ refreshToken: () => false });
    ctx.client.start();
    ctx.source.fail();
    ctx.clock.advance(1000);
    await flush();
    assert.equal(ctx.EventSource.instances.length, 2);
    ctx.source.fail();
    assert.deepEqual(ctx.clock.pendingDelays, [2000]);
    assert.equal(ctx.client.status, 'reconnecting');
  });

  test('a refresh that throws is reported and the reconnect still happens', async () => {
    const ctx = setup({
      refreshToken: () => {
        throw new Error('network down');
      },
    });
    ctx.client.start();
    ctx.source.fail();
    ctx.clock.advance(1000);
    await flush();
    assert.deepEqual(ctx.errors.map((e) => e.message), ['network down']);
    assert.equal(ctx.EventSource.instances.length, 2);
  });
});

describe('unsupported browser', () => {
  test('a missing event source is reported as failed through on status and on error', () => {
    const ctx = setup({ options: { EventSourceImpl: undefined } });
    ctx.client.start();
    assert.equal(ctx.client.status, 'failed');
    assert.deepEqual(ctx.statuses, ['failed']);
    assert.equal(ctx.errors.length, 1);
    assert.ok(ctx.errors[0] instanceof SseUnsupportedError);
    assert.equal(ctx.clock.pendingCount, 0);
    assert.equal(ctx.documentRef.listenerCount('visibilitychange'), 0);
    assert.equal(ctx.windowRef.listenerCount('online'), 0);
  });
});

describe('visibility and network', () => {
  test('the page becoming visible while reconnecting connects at once and cancels the timer', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.fail();
    assert.equal(ctx.clock.pendingCount, 1);
    ctx.documentRef.setVisibility('visible');
    assert.equal(ctx.EventSource.instances.length, 2);
    assert.equal(ctx.clock.pendingCount, 0);
  });

  test('a visibility change to hidden does not reconnect', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.fail();
    ctx.documentRef.setVisibility('hidden');
    assert.equal(ctx.EventSource.instances.length, 1);
    assert.equal(ctx.clock.pendingCount, 1);
  });

  test('becoming visible or online while connected leaves the open stream alone', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.documentRef.setVisibility('visible');
    ctx.windowRef.dispatch('online');
    assert.equal(ctx.EventSource.instances.length, 1);
    assert.equal(ctx.source.closed, false);
  });

  test('going online after the status failed reconnects with a fresh series of attempts', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    await failAttempts(ctx, 6);
    assert.equal(ctx.client.status, 'failed');
    const before = ctx.EventSource.instances.length;
    ctx.windowRef.dispatch('online');
    await flush();
    assert.equal(ctx.EventSource.instances.length, before + 1);
    assert.equal(ctx.client.status, 'reconnecting');
    ctx.source.fail();
    assert.deepEqual(ctx.clock.pendingDelays, [1000]);
    assert.equal(ctx.client.status, 'reconnecting');
  });

  test('becoming visible after the status failed reconnects and opens', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    await failAttempts(ctx, 6);
    ctx.documentRef.setVisibility('visible');
    await flush();
    ctx.source.open();
    assert.equal(ctx.client.status, 'connected');
  });

  test('retry after failed reconnects at once', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    await failAttempts(ctx, 6);
    const before = ctx.EventSource.instances.length;
    ctx.client.retry();
    await flush();
    assert.equal(ctx.EventSource.instances.length, before + 1);
    assert.equal(ctx.client.attempts, 0);
  });

  test('waking with an expired token refreshes it before connecting', async () => {
    const fresh = makeJwt({ sub: '1', exp: NOW_S + 1800 });
    let release;
    let ctx = null;
    ctx = setup({
      token: makeJwt({ sub: '1', exp: NOW_S + 10 }),
      refreshToken: () =>
        new Promise((resolve) => {
          release = () => {
            ctx.setToken(fresh);
            resolve(true);
          };
        }),
    });
    ctx.client.start();
    ctx.source.open();
    ctx.clock.advance(30_000);
    ctx.source.fail();
    ctx.windowRef.dispatch('online');
    assert.equal(ctx.refreshCalls.length, 1);
    ctx.windowRef.dispatch('online'); // a second wake while refreshing starts nothing new
    assert.equal(ctx.refreshCalls.length, 1);
    assert.equal(ctx.EventSource.instances.length, 1);
    release();
    await flush();
    assert.equal(ctx.EventSource.instances.length, 2); // only once the refresh has finished
    assert.equal(ctx.source.query.get('token'), null);
  });
});

describe('whose stream', () => {
  test('a stream connected as someone else refreshes this login and reconnects', async () => {
    const ctx = setup({ options: { getUserId: () => '1' } });
    ctx.client.start();
    ctx.source.open();
    ctx.source.emit('connected', JSON.stringify({ status: 'ready', user_id: '2' }));
    const wrong = ctx.EventSource.instances[0];
    ctx.clock.advance(1000);
    await flush();
    ctx.source.open();
    ctx.source.emit('connected', JSON.stringify({ status: 'ready', user_id: '1' }));

    assert.equal(wrong.closed, true);
    assert.equal(ctx.refreshCalls.length, 1);
    assert.equal(ctx.EventSource.instances.length, 2);
    assert.deepEqual(
      ctx.events.map((event) => [event.type, event.envelope.user_id]),
      [['connected', '1']],
    );
    assert.equal(ctx.errors[0].name, 'SseWrongUserError');
    assert.equal(ctx.client.status, 'connected');
  });

  test('a stream still someone else after one refresh turns failed with a final error', async () => {
    const ctx = setup({ options: { getUserId: () => '1' } });
    ctx.client.start();
    ctx.source.open();
    ctx.source.emit('connected', { status: 'ready', user_id: '2' });
    ctx.clock.advance(1000);
    await flush();
    ctx.source.open();
    ctx.source.emit('connected', { status: 'ready', user_id: '2' }); // the refresh did not help
    ctx.clock.advance(60_000);
    await flush();

    assert.equal(ctx.client.status, 'failed');
    assert.equal(ctx.EventSource.instances.length, 2);
    assert.equal(ctx.EventSource.latest.closed, true);
    assert.equal(ctx.refreshCalls.length, 1);
    assert.equal(ctx.clock.pendingCount, 0);
    assert.equal(ctx.events.length, 0); // no frame of someone else's stream reached the page
    assert.deepEqual(
      ctx.errors.map((err) => [err.name, err.final]),
      [
        ['SseWrongUserError', false],
        ['SseWrongUserError', true],
      ],
    );
    assert.match(ctx.errors[1].message, /neu anmelden/);
  });

  test('retry after a wrong user failure refreshes once more before giving up again', async () => {
    const ctx = setup({ options: { getUserId: () => '1' } });
    ctx.client.start();
    ctx.source.open();
    ctx.source.emit('connected', { status: 'ready', user_id: '2' });
    ctx.clock.advance(1000);
    await flush();
    ctx.source.open();
    ctx.source.emit('connected', { status: 'ready', user_id: '2' });

    ctx.client.retry();
    await flush();
    ctx.source.open();
    ctx.source.emit('connected', { status: 'ready', user_id: '2' });
    ctx.clock.advance(1000);
    await flush();
    ctx.source.open();
    ctx.source.emit('connected', { status: 'ready', user_id: '1' });

    assert.equal(ctx.client.status, 'connected');
    assert.equal(ctx.refreshCalls.length, 2);
    assert.equal(ctx.client.attempts, 0);
    assert.deepEqual(
      ctx.events.map((event) => [event.type, event.envelope.user_id]),
      [['connected', '1']],
    );
  });

  test('without an expected user any connected frame is accepted', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.emit('connected', JSON.stringify({ status: 'ready', user_id: '2' }));
    assert.equal(ctx.events.length, 1);
    assert.equal(ctx.EventSource.instances.length, 1);
  });
});

describe('stop', () => {
  test('stop closes the source, clears the pending timer and removes every listener', () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    ctx.source.fail();
    ctx.clock.advance(1000);
    const current = ctx.source;
    current.fail();
    assert.equal(ctx.clock.pendingCount, 1);
    ctx.client.stop();
    assert.equal(ctx.clock.pendingCount, 0);
    assert.equal(current.closed, true);
    assert.equal(current.listenerCount(), 0);
    assert.equal(ctx.documentRef.listenerCount('visibilitychange'), 0);
    assert.equal(ctx.windowRef.listenerCount('online'), 0);
    assert.equal(ctx.client.status, 'idle');
  });

  test('stop on an open stream closes it and nothing reconnects afterwards', async () => {
    const ctx = setup();
    ctx.client.start();
    ctx.source.open();
    const source = ctx.source;
    assert.ok(source.listenerCount() > 0);
    ctx.client.stop();
    assert.equal(source.closed, true);
    assert.equal(source.listenerCount(), 0);
    ctx.documentRef.setVisibility('visible');
    ctx.windowRef.dispatch('online');
    ctx.clock.advance(60_000);
    await flush();
    assert.equal(ctx.EventSource.instances.length, 1);
    assert.deepEqual(ctx.statuses, ['connected', 'idle']);
  });

  test('stop during a token refresh prevents the connection that would follow it', async () => {
    let release;
    const ctx = setup({ refreshToken: () => new Promise((resolve) => (release = resolve)) });
    ctx.client.start();
    ctx.source.fail();
    ctx.clock.advance(1000);
    assert.equal(ctx.refreshCalls.length, 1);
    ctx.client.stop();
    release(true);
    await flush();
    assert.equal(ctx.EventSource.instances.length, 1);
    assert.equal(ctx.clock.pendingCount, 0);
  });
});
