/**
 * "Meine OGS-Gruppe": for each home group the staff member leads, every child with a badge
 * saying where the child is right now (the room of its activity, or "Abwesend").
 */

import { RequestTracker } from './api-client.js';
import { domId, h, showCards, toastError } from './dom.js';
import { compareNames, formatSince } from './format.js';

export const AWAY_LABEL = 'Abwesend';
const PRESENT_FALLBACK_LABEL = 'Anwesend';

export function createOgsView({ api }) {
  const cards = document.getElementById('ogs-cards');
  const groups = new Map(); // ogs group id → { group, els }
  const tracker = new RequestTracker();
  const emptyCard = h(
    'div',
    { class: 'card card--empty', 'data-testid': 'ogs-empty' },
    h('p', { class: 'card__title', text: 'Keine OGS-Gruppe' }),
    h('p', { text: 'Sie leiten keine OGS-Gruppe. Hier erscheinen die Kinder Ihrer Gruppe, sobald Sie eine leiten.' }),
  );

  /** Shows exactly these home groups (from /api/me), in this order. */
  function apply(ogsGroups, { refreshAll = false } = {}) {
    showCards(cards, emptyCard, groups, ogsGroups, {
      create: createCard,
      update: (entry, group) => {
        entry.group = group;
        renderHead(entry);
      },
      refresh: refreshRoster,
      remove: (id, entry) => {
        entry.els.card.remove();
        groups.delete(id);
      },
      refreshAll,
    });
  }

  function createCard(group) {
    const id = String(group.id);
    const titleId = domId('ogs', id, 'title');
    const els = {};
    els.title = h('h3', { class: 'card__title', id: titleId });
    els.meta = h('p', { class: 'card__meta' });
    els.present = h('span', { class: 'count__number', 'data-testid': 'ogs-present-count' }, '0');
    els.total = h('span', { class: 'count__label' }, 'da');
    els.list = h('ul', { class: 'people', 'aria-label': 'Kinder der Gruppe' });
    els.empty = h('p', { class: 'empty-note', text: 'Keine Kinder in dieser Gruppe.', hidden: true });
    els.card = h(
      'article',
      { class: 'card ogs-card', 'data-testid': 'ogs-group', 'data-ogs-group-id': id, 'aria-labelledby': titleId },
      h(
        'div',
        { class: 'card__head' },
        h('div', {}, els.title, els.meta),
        h('div', { class: 'count' }, els.present, els.total),
      ),
      els.list,
      els.empty,
    );
    const entry = { group, els };
    renderHead(entry);
    return entry;
  }

  function renderHead(entry) {
    entry.els.title.textContent = entry.group.name ?? 'OGS-Gruppe';
    entry.els.meta.textContent = entry.group.room_name ? `Gruppenraum: ${entry.group.room_name}` : '';
  }

  /** Refetches one home group's roster. */
  async function refreshRoster(id) {
    const entry = groups.get(id);
    if (!entry) return;
    const ticket = tracker.issue(id);
    try {
      const students = await api.get(`/api/ogs-groups/${encodeURIComponent(id)}/students`);
      if (tracker.isCurrent(id, ticket) && groups.get(id) === entry) {
        renderRoster(entry, Array.isArray(students) ? students : []);
      }
    } catch (err) {
      toastError(err, `OGS-Gruppe „${entry.group.name}“ konnte nicht geladen werden`);
    }
  }

  /**
   * Moves a child's badge at once for a `student_checkin` / `student_checkout` of this home
   * group; the refetch the caller schedules confirms it. A check-out from a group the child
   * has already left (the first half of a transfer, arriving late) changes nothing.
   */
  function applyEvent(type, envelope) {
    const data = envelope?.data ?? {};
    const entry = data.ogs_group_id == null ? null : groups.get(String(data.ogs_group_id));
    if (!entry || !entry.students || data.student_id == null) return;
    const studentId = String(data.student_id);
    const groupId = envelope.active_group_id == null ? null : String(envelope.active_group_id);
    const students = entry.students.map((student) => {
      if (String(student.student_id) !== studentId) return student;
      if (type === 'student_checkin') {
        return { ...student, status: 'present', active_group_id: groupId, room_name: data.room_name, since: envelope.timestamp };
      }
      if (String(student.active_group_id) !== groupId) return student;
      return { ...student, status: 'away', active_group_id: null, room_name: null, since: null };
    });
    tracker.issue(String(data.ogs_group_id));
    renderRoster(entry, students);
  }

  function renderRoster(entry, students) {
    entry.students = students;
    const sorted = [...students].sort((a, b) => compareNames(a.student_name, b.student_name));
    entry.els.list.replaceChildren(...sorted.map(studentRow));
    const present = students.filter((s) => s.status === 'present').length;
    entry.els.present.textContent = String(present);
    entry.els.total.textContent = `von ${students.length} da`;
    entry.els.empty.hidden = students.length > 0;
  }

  function studentRow(student) {
    const present = student.status === 'present';
    const label = present ? student.room_name || PRESENT_FALLBACK_LABEL : AWAY_LABEL;
    return h(
      'li',
      {
        class: 'person',
        'data-testid': 'ogs-student',
        'data-student-id': String(student.student_id),
        'data-status': present ? 'present' : 'away',
      },
      h(
        'div',
        { class: 'person__text' },
        h('span', { class: 'person__name', text: student.student_name }),
        h('span', { class: 'person__since', text: present ? formatSince(student.since) : '' }),
      ),
      h(
        'span',
        {
          class: present ? 'badge badge--present' : 'badge badge--away',
          'data-testid': 'ogs-badge',
          title: present ? `Anwesend in ${label}` : AWAY_LABEL,
        },
        label,
      ),
    );
  }

  /** Forgets everything (logout). */
  function clear() {
    tracker.reset();
    for (const entry of groups.values()) entry.els.card.remove();
    groups.clear();
    emptyCard.remove();
  }

  return { apply, applyEvent, refreshRoster, clear, has: (id) => groups.has(String(id)) };
}
