/**
 * Tests for api/static/debouncer.js: keyed, coalescing delays.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createDebouncer } from '../../api/static/debouncer.js';
import { FakeClock } from './fakes.mjs';

function setup() {
  const clock = new FakeClock();
  const debouncer = createDebouncer({
    delayMs: 500,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
  });
  return { clock, debouncer };
}

test('a burst of requests for one key runs the task once after 500 ms', () => {
  const { clock, debouncer } = setup();
  const runs = [];
  for (let i = 0; i < 5; i += 1) debouncer.schedule('group:123', () => runs.push(clock.now()));
  clock.advance(499);
  assert.deepEqual(runs, []);
  clock.advance(1);
  assert.deepEqual(runs, [500]);
});

test('later requests do not push the run back, so a steady stream still refreshes', () => {
  const { clock, debouncer } = setup();
  const runs = [];
  for (let t = 0; t < 1200; t += 100) {
    debouncer.schedule('group:123', () => runs.push(clock.now()));
    clock.advance(100);
  }
  assert.deepEqual(runs, [500, 1000]);
});

test('different keys run independently', () => {
  const { clock, debouncer } = setup();
  const runs = [];
  debouncer.schedule('group:1', () => runs.push('group:1'));
  debouncer.schedule('ogs:7', () => runs.push('ogs:7'));
  clock.advance(500);
  assert.deepEqual(runs.sort(), ['group:1', 'ogs:7']);
});

test('the latest task passed for a key is the one that runs', () => {
  const { clock, debouncer } = setup();
  const runs = [];
  debouncer.schedule('me', () => runs.push('first'));
  debouncer.schedule('me', () => runs.push('second'));
  clock.advance(500);
  assert.deepEqual(runs, ['second']);
});

test('cancel all clears every pending timer', () => {
  const { clock, debouncer } = setup();
  const runs = [];
  debouncer.schedule('a', () => runs.push('a'));
  debouncer.schedule('b', () => runs.push('b'));
  debouncer.cancelAll();
  assert.equal(clock.pendingCount, 0);
  assert.equal(debouncer.size, 0);
  clock.advance(1000);
  assert.deepEqual(runs, []);
});
