/**
 * The office view (admins only): room occupancy now and over today, reader health, and the
 * day's attendance record with filters, a timeline per child and a CSV download.
 *
 * Live: the admin stream's `occupancy` event updates the "now" counts at once and
 * `device_status` a reader's row; both also schedule a refetch (coalesced), so the server
 * stays the one source of truth. The chart is a small SVG drawn here: no library, no CDN.
 *
 * Times show in the school's time zone (`/api/occupancy` names it), not the browser's, and
 * "today" is the school's: until the first occupancy answer, the date field stays empty and
 * the server picks the school's day.
 */

import { RequestTracker } from './api-client.js';
import { h, toastError } from './dom.js';
import { compareNames, formatClock, parseServerTime } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
const CHART = { width: 640, height: 180, left: 28, right: 8, top: 10, bottom: 22 };
const REFETCH_MS = 500;
const REASONS = {
  checkout: 'ausgecheckt',
  transfer: 'gewechselt',
  activity_end: 'Aktivität beendet',
  auto_checkout: 'Tagesende (automatisch)',
};

/** "2026-12-02" for a Date: its calendar day in `timeZone` (the school's), else the browser's. */
export function isoDay(date, timeZone) {
  if (timeZone) {
    const parts = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(date);
    const part = (type) => parts.find((p) => p.type === type).value;
    return `${part('year')}-${part('month')}-${part('day')}`;
  }
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/**
 * The SVG polyline points of a step curve: `points` are `{t, count}`, drawn from `start` to
 * `end` (ms) with counts up to `max`. Each change is a vertical step at its time.
 */
export function stepPoints(points, { start, end, max }) {
  const span = Math.max(1, end - start);
  const x = (t) => CHART.left + ((t - start) / span) * (CHART.width - CHART.left - CHART.right);
  const y = (count) => CHART.height - CHART.bottom - (count / Math.max(1, max)) * (CHART.height - CHART.top - CHART.bottom);
  const out = [];
  let previous = null;
  for (const point of points) {
    const t = parseServerTime(point.t)?.getTime();
    if (t === undefined) continue;
    if (previous !== null) out.push(`${x(t).toFixed(1)},${y(previous).toFixed(1)}`);
    out.push(`${x(t).toFixed(1)},${y(point.count).toFixed(1)}`);
    previous = point.count;
  }
  return out.join(' ');
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child);
  return el;
}

export function createOfficeView({ api, schedule }) {
  const $ = (id) => document.getElementById(id);
  const tracker = new RequestTracker();
  let visible = false;
  let filtersLoaded = false;
  let timeZone; // the school's, from /api/occupancy; undefined until then (the browser's)
  let lastDevices = null; // the last answers, redrawn when the time zone becomes known
  let lastRecords = null;
  const clock = (value) => formatClock(value, { timeZone });

  function show() {
    visible = true;
    $('office-view').hidden = false;
    $('office-nav').hidden = false;
    if (!$('attendance-date').value && timeZone) $('attendance-date').value = isoDay(new Date(), timeZone);
    if (!filtersLoaded) loadFilters();
    refreshAll();
  }

  function hide() {
    visible = false;
    $('office-view').hidden = true;
    $('office-nav').hidden = true;
  }

  function clear() {
    hide();
    filtersLoaded = false;
    timeZone = undefined;
    lastDevices = null;
    lastRecords = null;
    for (const id of ['occupancy-now', 'occupancy-chart', 'device-rows', 'attendance-rows']) $(id).replaceChildren();
  }

  function refreshAll() {
    if (!visible) return;
    loadOccupancy();
    loadDevices();
    loadAttendance();
  }

  /** Stream events for the office: live counts and reader state, then a coalesced refetch. */
  function applyEvent(type, envelope) {
    if (!visible) return;
    const data = envelope?.data ?? {};
    if (type === 'occupancy') {
      for (const room of data.rooms ?? []) {
        const cell = document.querySelector(`[data-testid="occupancy-count"][data-room-id="${CSS.escape(String(room.room_id))}"]`);
        if (cell) cell.textContent = String(room.student_count);
      }
      schedule('office:occupancy', loadOccupancy, REFETCH_MS);
      if (showsToday()) schedule('office:attendance', loadAttendance, REFETCH_MS);
    } else if (type === 'device_status') {
      const row = document.querySelector(`[data-testid="device-row"][data-device-id="${CSS.escape(String(data.device_id))}"]`);
      if (row) renderOnline(row, Boolean(data.online));
      schedule('office:devices', loadDevices, REFETCH_MS);
    }
  }

  function showsToday() {
    const day = $('attendance-date').value;
    return !day || day === isoDay(new Date(), timeZone);
  }

  async function loadFilters() {
    try {
      const [groups, rooms] = await Promise.all([api.get('/api/ogs-groups'), api.get('/api/rooms')]);
      fillSelect($('attendance-group'), groups.map((g) => [g.id, g.name]), 'Alle OGS-Gruppen');
      fillSelect($('attendance-room'), rooms.map((r) => [r.id, r.name]), 'Alle Räume');
      filtersLoaded = true;
    } catch (err) {
      toastError(err, 'Filter konnten nicht geladen werden');
    }
  }

  function fillSelect(select, options, allLabel) {
    const current = select.value;
    select.replaceChildren(h('option', { value: '' }, allLabel), ...options.map(([value, label]) => h('option', { value }, label)));
    select.value = current;
  }

  // ---------- occupancy ----------

  async function loadOccupancy() {
    const ticket = tracker.issue('occupancy');
    try {
      const occupancy = await api.get('/api/occupancy');
      if (tracker.isCurrent('occupancy', ticket)) renderOccupancy(occupancy);
    } catch (err) {
      toastError(err, 'Belegung konnte nicht geladen werden');
    }
  }

  /** Take the school's time zone and day from an occupancy answer; redraw times if it changed. */
  function adoptSchoolDay(occupancy) {
    if (!$('attendance-date').value && occupancy.date) $('attendance-date').value = occupancy.date;
    if (!occupancy.timezone || occupancy.timezone === timeZone) return;
    timeZone = occupancy.timezone;
    if (lastDevices) renderDevices(lastDevices);
    if (lastRecords) renderAttendance(lastRecords);
  }

  function renderOccupancy(occupancy) {
    adoptSchoolDay(occupancy);
    const rooms = occupancy.rooms ?? [];
    $('occupancy-now').replaceChildren(
      ...rooms.map((room, index) =>
        h(
          'div',
          { class: `occupancy-room occupancy-room--c${index % 6}`, 'data-testid': 'occupancy-room' },
          h('span', { class: 'occupancy-room__count', 'data-testid': 'occupancy-count', 'data-room-id': room.room_id }, String(room.present)),
          h('span', { class: 'occupancy-room__name', text: room.room_name }),
        ),
      ),
    );
    const times = rooms.flatMap((room) => room.points.map((p) => parseServerTime(p.t)?.getTime())).filter(Number.isFinite);
    const start = Math.min(...times);
    const end = Math.max(...times);
    // Start the axis just before the first arrival, not at midnight: the afternoon fills it.
    const firstChange = Math.min(
      ...rooms.flatMap((room) => room.points.filter((p) => p.count > 0).map((p) => parseServerTime(p.t).getTime())),
    );
    const lead = Math.max(60 * 1000, (end - firstChange) * 0.05);
    const from = Number.isFinite(firstChange) ? Math.max(start, firstChange - lead) : start;
    const max = Math.max(1, ...rooms.flatMap((room) => room.points.map((p) => p.count)));
    const chart = svg('svg', {
      viewBox: `0 0 ${CHART.width} ${CHART.height}`,
      class: 'chart',
      role: 'img',
      'aria-label': 'Belegung der Räume heute',
    });
    const base = CHART.height - CHART.bottom;
    chart.append(
      svg('line', { x1: CHART.left, y1: base, x2: CHART.width - CHART.right, y2: base, class: 'chart__axis' }),
      svg('text', { x: 2, y: CHART.top + 8, class: 'chart__label' }, document.createTextNode(String(max))),
      svg('text', { x: 2, y: base, class: 'chart__label' }, document.createTextNode('0')),
      svg('text', { x: CHART.left, y: CHART.height - 4, class: 'chart__label' }, document.createTextNode(clock(new Date(from)))),
      svg('text', { x: CHART.width - CHART.right - 34, y: CHART.height - 4, class: 'chart__label' }, document.createTextNode(clock(new Date(end)))),
    );
    rooms.forEach((room, index) => {
      const visible = room.points.filter((p) => parseServerTime(p.t).getTime() >= from);
      const before = room.points.filter((p) => parseServerTime(p.t).getTime() < from).at(-1);
      const drawn = before ? [{ t: new Date(from).toISOString(), count: before.count }, ...visible] : visible;
      chart.append(
        svg('polyline', {
          points: stepPoints(drawn, { start: from, end, max }),
          class: `chart__line chart__line--c${index % 6}`,
          'data-testid': 'occupancy-line',
          'data-room-id': room.room_id,
          'data-counts': room.points.map((p) => p.count).join(','),
        }),
      );
    });
    $('occupancy-chart').replaceChildren(chart);
  }

  // ---------- readers ----------

  async function loadDevices() {
    const ticket = tracker.issue('devices');
    try {
      const devices = await api.get('/api/devices');
      if (tracker.isCurrent('devices', ticket)) renderDevices(devices);
    } catch (err) {
      toastError(err, 'Leser konnten nicht geladen werden');
    }
  }

  function renderOnline(row, online) {
    row.dataset.online = online ? 'true' : 'false';
    const cell = row.querySelector('[data-testid="device-online"]');
    cell.textContent = online ? 'online' : 'offline';
  }

  function renderDevices(devices) {
    lastDevices = devices;
    $('device-rows').replaceChildren(
      ...devices.map((device) => {
        const row = h(
          'tr',
          { 'data-testid': 'device-row', 'data-device-id': device.id, class: device.active ? '' : 'is-inactive' },
          h('td', { text: device.id }),
          h('td', { text: device.room_name }),
          h('td', { class: 'device-state' }, h('span', { class: 'device-state__dot', 'aria-hidden': 'true' }), h('span', { 'data-testid': 'device-online' })),
          h('td', { text: clock(device.last_seen) || '–' }),
          h('td', { text: clock(device.last_scan) || '–' }),
          h('td', { text: device.firmware || '–' }),
          h('td', { class: 'num', text: String(device.scans_today ?? 0) }),
          h('td', { class: 'num', text: String(device.rejected_today ?? 0) }),
        );
        renderOnline(row, device.online);
        return row;
      }),
    );
  }

  // ---------- attendance ----------

  function attendanceQuery() {
    const params = new URLSearchParams();
    const day = $('attendance-date').value;
    if (day) params.set('date', day);
    if ($('attendance-group').value) params.set('group', $('attendance-group').value);
    if ($('attendance-room').value) params.set('room', $('attendance-room').value);
    return params;
  }

  async function loadAttendance() {
    const params = attendanceQuery();
    const csv = new URLSearchParams(params);
    csv.set('format', 'csv');
    $('attendance-csv').href = `/api/attendance?${csv}`;
    const ticket = tracker.issue('attendance');
    try {
      const records = await api.get(`/api/attendance?${params}`);
      if (tracker.isCurrent('attendance', ticket)) renderAttendance(records);
    } catch (err) {
      toastError(err, 'Anwesenheit konnte nicht geladen werden');
    }
  }

  function renderAttendance(records) {
    lastRecords = records;
    const sorted = [...records].sort((a, b) => compareNames(a.student_name, b.student_name));
    const times = sorted.flatMap((r) => r.stays.flatMap((s) => [s.entry_time, s.exit_time])).map((t) => parseServerTime(t)?.getTime()).filter(Number.isFinite);
    const range = { start: Math.min(...times, Date.now()), end: Math.max(...times, Date.now()) };
    $('attendance-count').textContent = `${sorted.length} ${sorted.length === 1 ? 'Kind' : 'Kinder'}`;
    $('attendance-empty').hidden = sorted.length > 0;
    $('attendance-rows').replaceChildren(
      ...sorted.map((record) =>
        h(
          'tr',
          { 'data-testid': 'attendance-row', 'data-student-id': record.student_id },
          h('td', { text: record.student_name }),
          h('td', { text: record.ogs_group_name ?? '–' }),
          h('td', { text: clock(record.arrival) }),
          h('td', { text: record.present ? 'anwesend' : clock(record.departure) }),
          h('td', { text: record.checked_in_by?.label ?? '' }),
          h('td', { text: record.present ? '' : `${record.checked_out_by?.label ?? ''}${reasonNote(record)}` }),
          h('td', { class: 'timeline-cell' }, timeline(record, range)),
        ),
      ),
    );
  }

  function reasonNote(record) {
    const reason = record.departure_reason;
    return reason && reason !== 'checkout' ? ` (${REASONS[reason] ?? reason})` : '';
  }

  /** A child's day as bars on the day's time axis, one per stay, titled with room and times. */
  function timeline(record, { start, end }) {
    const span = Math.max(1, end - start);
    const bar = h('div', { class: 'timeline', 'aria-label': `Tagesverlauf von ${record.student_name}` });
    for (const stay of record.stays) {
      const from = parseServerTime(stay.entry_time).getTime();
      const to = parseServerTime(stay.exit_time)?.getTime() ?? Date.now();
      const segment = h('span', {
        class: 'timeline__stay',
        title: `${stay.room_name}: ${clock(stay.entry_time)}–${stay.exit_time ? clock(stay.exit_time) : 'jetzt'}`,
        'data-room-id': stay.room_id,
      });
      segment.style.left = `${((from - start) / span) * 100}%`;
      segment.style.width = `${Math.max(0.8, ((to - from) / span) * 100)}%`;
      bar.append(segment);
    }
    return bar;
  }

  for (const id of ['attendance-date', 'attendance-group', 'attendance-room']) {
    document.getElementById(id)?.addEventListener('change', () => loadAttendance());
  }

  return { show, hide, clear, applyEvent, refreshAll };
}
