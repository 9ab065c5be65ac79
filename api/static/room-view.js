/**
 * "Meine Aktivitäten": one card per active group the staff member supervises, with the
 * present students, manual check-in and check-out, ending the activity, and the form that
 * starts a new one.
 *
 * Each card is built once and only its list is redrawn, so a search typed into a card
 * survives live updates.
 */

import { RequestTracker } from './api-client.js';
import { createDebouncer } from './debouncer.js';
import { domId, h, showCards, toast, toastError } from './dom.js';
import { compareNames, formatSince } from './format.js';

const SEARCH_DELAY_MS = 250;
const SEARCH_MIN_CHARS = 2;
const SEARCH_LIMIT = 8;

const groupPath = (groupId) => `/api/active/groups/${encodeURIComponent(groupId)}`;

/**
 * `api`: an ApiClient. `onGroupsChanged()`: the set of active groups changed because of
 * something done here (started, ended) — the caller refetches /api/me and the rooms.
 */
export function createRoomView({ api, onGroupsChanged }) {
  const cards = document.getElementById('group-cards');
  const startForm = document.getElementById('start-form');
  const roomSelect = document.getElementById('start-room');
  const nameInput = document.getElementById('start-name');
  const groups = new Map(); // active group id → { group, visits, loaded, els }
  const tracker = new RequestTracker();
  const searches = createDebouncer({ delayMs: SEARCH_DELAY_MS });
  const emptyCard = h(
    'div',
    { class: 'card card--empty', 'data-testid': 'groups-empty' },
    h('p', { class: 'card__title', text: 'Keine laufende Aktivität' }),
    h('p', {
      text: 'Sie betreuen gerade keine Aktivität. Starten Sie eine mit „Aktivität starten“ oder melden Sie sich am Lesegerät im Raum an.',
    }),
  );

  startForm.addEventListener('submit', startActivity);
  document.addEventListener('click', closeSearchesOutside);

  /** Shows exactly these groups (from /api/me), in this order. */
  function apply(activeGroups, { refreshAll = false } = {}) {
    showCards(cards, emptyCard, groups, activeGroups, {
      create: createCard,
      update: (entry, group) => {
        entry.group = group;
        renderHead(entry);
      },
      refresh: refreshGroup,
      remove: removeGroup,
      refreshAll,
    });
  }

  function removeGroup(id, entry) {
    searches.cancel(id);
    entry.els.card.remove();
    groups.delete(id);
  }

  function createCard(group) {
    const id = String(group.id);
    const titleId = domId('group', id, 'title');
    const searchId = domId('group', id, 'search');
    const els = {};
    els.title = h('h3', { class: 'card__title', id: titleId });
    els.meta = h('p', { class: 'card__meta' });
    els.count = h('span', { class: 'count__number', 'data-testid': 'student-count' }, '0');
    els.list = h('ul', { class: 'people', 'aria-label': 'Anwesende Kinder' });
    els.empty = h('p', { class: 'empty-note', text: 'Noch keine Kinder angemeldet.' });
    els.search = h('input', {
      id: searchId,
      type: 'search',
      placeholder: 'Name eingeben …',
      autocomplete: 'off',
      enterkeyhint: 'search',
      'aria-controls': `${searchId}-results`,
      'data-testid': 'checkin-search',
    });
    els.results = h('ul', {
      id: `${searchId}-results`,
      class: 'checkin__results',
      'aria-label': 'Suchergebnisse',
      'aria-live': 'polite',
      hidden: true,
    });
    els.checkin = h(
      'div',
      { class: 'checkin' },
      h('label', { for: searchId, text: 'Kind manuell anmelden' }),
      els.search,
      els.results,
    );
    els.end = h(
      'button',
      { type: 'button', class: 'btn btn--danger-outline', 'data-testid': 'end-activity' },
      'Aktivität beenden',
    );
    els.card = h(
      'article',
      { class: 'card group-card', 'data-testid': 'group-card', 'data-group-id': id, 'aria-labelledby': titleId },
      h(
        'div',
        { class: 'card__head' },
        h('div', {}, els.title, els.meta),
        h('div', { class: 'count' }, els.count, h('span', { class: 'count__label', text: 'anwesend' })),
      ),
      els.list,
      els.empty,
      els.checkin,
      h('div', { class: 'card__footer' }, els.end),
    );
    const entry = { group, visits: [], loaded: false, els };
    els.search.addEventListener('input', () => searches.schedule(id, () => search(id)));
    els.search.addEventListener('keydown', (event) => onSearchKey(entry, event));
    els.end.addEventListener('click', () => endActivity(id));
    renderHead(entry);
    return entry;
  }

  function renderHead(entry) {
    const { group, els } = entry;
    els.title.textContent = group.name ?? 'Aktivität';
    els.meta.textContent = [group.room_name, formatSince(group.started_at)].filter(Boolean).join(' · ');
  }

  /** Refetches the present students of one group. */
  async function refreshGroup(id) {
    const entry = groups.get(id);
    if (!entry) return;
    const ticket = tracker.issue(`visits:${id}`);
    try {
      const visits = await api.get(`${groupPath(id)}/visits/display`);
      if (tracker.isCurrent(`visits:${id}`, ticket) && groups.get(id) === entry) {
        renderVisits(entry, Array.isArray(visits) ? visits : []);
      }
    } catch (err) {
      if (err.status === 403 || err.status === 404) {
        onGroupsChanged(); // the group ended or is no longer ours
        return;
      }
      toastError(err, `Liste „${entry.group.name}“ konnte nicht geladen werden`);
    }
  }

  /**
   * Shows a `student_checkin` / `student_checkout` at once, from the event's data. The caller
   * also schedules a refetch, which confirms it; an answer already on its way is dropped, as it
   * may predate the event.
   */
  function applyEvent(type, envelope) {
    const id = envelope?.active_group_id == null ? null : String(envelope.active_group_id);
    const entry = id === null ? null : groups.get(id);
    const data = envelope?.data ?? {};
    if (!entry || !entry.loaded || data.student_id == null) return;
    const studentId = String(data.student_id);
    const visits = entry.visits.filter((visit) => String(visit.student_id) !== studentId);
    if (type === 'student_checkin') {
      visits.push({ student_id: studentId, student_name: data.student_name, entry_time: envelope.timestamp });
    }
    tracker.issue(`visits:${id}`);
    renderVisits(entry, visits);
  }

  function renderVisits(entry, visits) {
    const before = new Set(entry.visits.map((visit) => String(visit.student_id)));
    const sorted = [...visits].sort((a, b) => compareNames(a.student_name, b.student_name));
    entry.els.list.replaceChildren(
      ...sorted.map((visit) => visitRow(entry, visit, entry.loaded && !before.has(String(visit.student_id)))),
    );
    entry.visits = visits;
    entry.loaded = true;
    entry.els.count.textContent = String(visits.length);
    entry.els.empty.hidden = visits.length > 0;
  }

  function visitRow(entry, visit, isNew) {
    const studentId = String(visit.student_id);
    const name = visit.student_name ?? `Kind ${studentId}`;
    const button = h(
      'button',
      { type: 'button', class: 'btn btn--secondary', 'data-testid': 'checkout-button', 'aria-label': `${name} abmelden` },
      'Abmelden',
    );
    button.addEventListener('click', () => checkout(entry, visit, button));
    return h(
      'li',
      { class: isNew ? 'person is-new' : 'person', 'data-testid': 'student-row', 'data-student-id': studentId },
      h(
        'div',
        { class: 'person__text' },
        h('span', { class: 'person__name', text: name }),
        h('span', { class: 'person__since', text: formatSince(visit.entry_time) }),
      ),
      button,
    );
  }

  async function checkout(entry, visit, button) {
    const groupId = String(entry.group.id);
    const studentId = String(visit.student_id);
    button.disabled = true;
    try {
      await api.post(`${groupPath(groupId)}/visits/${encodeURIComponent(studentId)}/checkout`);
      renderVisits(entry, entry.visits.filter((v) => String(v.student_id) !== studentId));
      toast(`${visit.student_name} abgemeldet.`, { kind: 'success' });
      refreshGroup(groupId);
    } catch (err) {
      button.disabled = false;
      toastError(err, `${visit.student_name} konnte nicht abgemeldet werden`);
    }
  }

  async function search(id) {
    const entry = groups.get(id);
    if (!entry) return;
    const query = entry.els.search.value.trim();
    if (query.length < SEARCH_MIN_CHARS) {
      showResults(entry, query ? [hint(`Mindestens ${SEARCH_MIN_CHARS} Buchstaben eingeben.`)] : null);
      return;
    }
    const ticket = tracker.issue(`search:${id}`);
    try {
      const students = await api.get(`/api/students?query=${encodeURIComponent(query)}`);
      if (!tracker.isCurrent(`search:${id}`, ticket) || groups.get(id) !== entry) return;
      const list = (Array.isArray(students) ? students : []).slice(0, SEARCH_LIMIT);
      showResults(entry, list.length ? list.map((s) => resultItem(entry, s)) : [hint('Kein Kind gefunden.')]);
    } catch (err) {
      toastError(err, 'Suche fehlgeschlagen');
    }
  }

  function hint(text) {
    return h('li', { class: 'checkin__hint', text });
  }

  function resultItem(entry, student) {
    const studentId = String(student.student_id);
    const present = entry.visits.some((visit) => String(visit.student_id) === studentId);
    const button = h(
      'button',
      {
        type: 'button',
        class: 'checkin__result',
        'data-testid': 'checkin-result',
        'data-student-id': studentId,
        disabled: present,
      },
      h('span', { text: student.student_name }),
      h('span', { class: 'checkin__action', text: present ? 'bereits hier' : 'Anmelden' }),
    );
    button.addEventListener('click', () => checkin(entry, student, button));
    return h('li', {}, button);
  }

  /** `items`: list elements to show, or null to close the list. */
  function showResults(entry, items) {
    entry.els.results.replaceChildren(...(items ?? []));
    entry.els.results.hidden = !items;
  }

  function clearSearch(entry) {
    searches.cancel(String(entry.group.id));
    tracker.issue(`search:${entry.group.id}`); // an answer still on its way is dropped
    entry.els.search.value = '';
    showResults(entry, null);
  }

  function onSearchKey(entry, event) {
    if (event.key === 'Escape') {
      clearSearch(entry);
    } else if (event.key === 'Enter') {
      event.preventDefault();
      const choices = entry.els.results.querySelectorAll('[data-testid="checkin-result"]:not(:disabled)');
      if (choices.length === 1) choices[0].click();
    }
  }

  function closeSearchesOutside(event) {
    for (const entry of groups.values()) {
      if (!entry.els.checkin.contains(event.target)) showResults(entry, null);
    }
  }

  async function checkin(entry, student, button) {
    const groupId = String(entry.group.id);
    button.disabled = true;
    try {
      await api.post(`${groupPath(groupId)}/visits`, { student_id: String(student.student_id) });
      toast(`${student.student_name} angemeldet.`, { kind: 'success' });
      clearSearch(entry);
      entry.els.search.focus();
      refreshGroup(groupId);
    } catch (err) {
      button.disabled = false;
      toastError(err, `${student.student_name} konnte nicht angemeldet werden`);
    }
  }

  async function endActivity(id) {
    const entry = groups.get(id);
    if (!entry) return;
    entry.els.end.disabled = true;
    try {
      await api.post(`${groupPath(id)}/end`);
      removeGroup(id, entry);
      if (groups.size === 0) cards.prepend(emptyCard);
      toast(`Aktivität „${entry.group.name}“ beendet.`, { kind: 'success' });
      onGroupsChanged();
    } catch (err) {
      entry.els.end.disabled = false;
      toastError(err, 'Aktivität konnte nicht beendet werden');
    }
  }

  /** Fills the room select; rooms with a running activity are shown but not selectable. */
  async function loadRooms() {
    const ticket = tracker.issue('rooms');
    try {
      const rooms = await api.get('/api/rooms');
      if (tracker.isCurrent('rooms', ticket)) renderRooms(Array.isArray(rooms) ? rooms : []);
    } catch (err) {
      toastError(err, 'Räume konnten nicht geladen werden');
    }
  }

  function renderRooms(rooms) {
    const selected = roomSelect.value;
    const options = [...rooms]
      .sort((a, b) => compareNames(a.name, b.name))
      .map((room) => {
        const busy = room.active_group_id !== null && room.active_group_id !== undefined;
        return h('option', { value: String(room.id), disabled: busy }, busy ? `${room.name} (belegt)` : room.name);
      });
    roomSelect.replaceChildren(h('option', { value: '' }, 'Raum wählen …'), ...options);
    const keep = options.find((option) => option.value === selected && !option.disabled);
    roomSelect.value = keep ? selected : '';
  }

  async function startActivity(event) {
    event.preventDefault();
    const name = nameInput.value.trim();
    const roomId = roomSelect.value;
    if (!name) {
      toast('Bitte einen Namen für die Aktivität eingeben.', { kind: 'error' });
      nameInput.focus();
      return;
    }
    if (!roomId) {
      toast('Bitte einen Raum wählen.', { kind: 'error' });
      roomSelect.focus();
      return;
    }
    const submit = startForm.querySelector('[type="submit"]');
    submit.disabled = true;
    try {
      await api.post('/api/active/groups', { name, room_id: roomId });
      startForm.reset();
      toast(`Aktivität „${name}“ gestartet.`, { kind: 'success' });
      onGroupsChanged();
    } catch (err) {
      toastError(err, 'Aktivität konnte nicht gestartet werden');
    } finally {
      submit.disabled = false;
    }
  }

  /** Forgets everything (logout). */
  function clear() {
    searches.cancelAll();
    tracker.reset();
    for (const [id, entry] of groups) removeGroup(id, entry);
    emptyCard.remove();
    startForm.reset();
    roomSelect.replaceChildren(h('option', { value: '' }, 'Raum wählen …'));
  }

  return {
    apply,
    applyEvent,
    refreshGroup,
    loadRooms,
    clear,
    has: (id) => groups.has(String(id)),
    ids: () => [...groups.keys()],
  };
}
