/**
 * Tests for the pure parts of api/static/office-view.js: the occupancy chart's step curve.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { isoDay, stepPoints } from '../../api/static/office-view.js';

const START = Date.parse('2026-12-02T12:00:00Z');
const HOUR = 3600 * 1000;
const at = (hours) => new Date(START + hours * HOUR).toISOString();

test('a step curve rises and falls vertically at each change', () => {
  const points = [
    { t: at(0), count: 0 },
    { t: at(1), count: 2 },
    { t: at(2), count: 1 },
  ];

  const drawn = stepPoints(points, { start: START, end: START + 2 * HOUR, max: 2 })
    .split(' ')
    .map((pair) => pair.split(',').map(Number));

  // five vertices: start, the step up (same x twice), the step down (same x twice)
  assert.equal(drawn.length, 5);
  assert.equal(drawn[1][0], drawn[2][0]);
  assert.ok(drawn[2][1] < drawn[1][1], 'the count rises: y goes up the screen');
  assert.equal(drawn[3][0], drawn[4][0]);
  assert.ok(drawn[4][1] > drawn[3][1], 'the count falls');
  assert.ok(drawn[4][0] > drawn[0][0]);
});

test('counts scale to the largest count and zero sits on the axis', () => {
  const low = stepPoints([{ t: at(0), count: 0 }], { start: START, end: START + HOUR, max: 4 });
  const high = stepPoints([{ t: at(0), count: 4 }], { start: START, end: START + HOUR, max: 4 });

  assert.ok(Number(high.split(',')[1]) < Number(low.split(',')[1]));
});

test('iso day is the local calendar day', () => {
  assert.equal(isoDay(new Date(2026, 0, 5, 23, 30)), '2026-01-05');
});
