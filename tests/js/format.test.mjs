/**
 * Tests for api/static/format.js: server times, "seit" labels, error details, name order.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  compareNames,
  errorDetail,
  formatClock,
  formatSince,
  parseServerTime,
} from '../../api/static/format.js';

test('a utc entry time is shown as "seit" and the clock time in the given zone', () => {
  assert.equal(formatSince('2026-11-26T13:30:00.123Z', { timeZone: 'UTC' }), 'seit 13:30');
  assert.equal(formatSince('2026-11-26T13:30:00.123Z', { timeZone: 'Europe/Berlin' }), 'seit 14:30');
});

test('a timestamp without an offset is read as utc, not as local time', () => {
  assert.equal(parseServerTime('2026-11-26T13:30:00').toISOString(), '2026-11-26T13:30:00.000Z');
  assert.equal(formatClock('2026-11-26T13:30:00.5', { timeZone: 'UTC' }), '13:30');
});

test('a timestamp with an explicit offset keeps it', () => {
  assert.equal(parseServerTime('2026-11-26T14:30:00+01:00').toISOString(), '2026-11-26T13:30:00.000Z');
});

test('missing or invalid times give an empty label', () => {
  assert.equal(formatSince(null), '');
  assert.equal(formatSince(''), '');
  assert.equal(formatSince('gestern'), '');
  assert.equal(parseServerTime('gestern'), null);
});

test('an error detail string is shown as it is', () => {
  assert.equal(errorDetail({ detail: 'Raum ist bereits belegt' }, 409), 'Raum ist bereits belegt');
});

test('a validation error list is shown as its messages', () => {
  const body = { detail: [{ loc: ['body', 'name'], msg: 'Field required' }, { msg: 'too short' }] };
  assert.equal(errorDetail(body, 422), 'Field required; too short');
});

test('an error without detail names the http status', () => {
  assert.equal(errorDetail(null, 503), 'Anfrage fehlgeschlagen (HTTP 503).');
  assert.equal(errorDetail('', 0), 'Anfrage fehlgeschlagen.');
});

test('names sort in german order ignoring case and umlauts', () => {
  const names = ['Zoe', 'ömer', 'Anna', 'Ole', 'ali'];
  assert.deepEqual(names.sort(compareNames), ['ali', 'Anna', 'Ole', 'ömer', 'Zoe']);
});
