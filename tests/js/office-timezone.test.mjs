/**
 * The office view's "today" is the school's calendar day (api/static/office-view.js isoDay
 * with the school's time zone), not the browser's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { isoDay } from '../../api/static/office-view.js';

// 03:00 UTC on 2 December: 04:00 in Berlin, still 22:00 on 1 December in New York.
const INSTANT = new Date('2026-12-02T03:00:00Z');

test('the same instant is a different school day in Berlin and in New York', () => {
  assert.equal(isoDay(INSTANT, 'Europe/Berlin'), '2026-12-02');
  assert.equal(isoDay(INSTANT, 'America/New_York'), '2026-12-01');
});

test('without a time zone the day is the browser one', () => {
  assert.equal(isoDay(new Date(2026, 0, 5, 0, 15)), '2026-01-05');
});
