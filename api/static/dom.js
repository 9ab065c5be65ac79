/**
 * Small DOM helpers for the dashboard: element building and toast messages.
 */

/**
 * `h('button', { class: 'btn', 'data-testid': 'x', onclick: fn }, 'Text')`.
 * `text` sets textContent, `on…` adds a listener, `true` sets an empty attribute and
 * null/undefined/false leave the attribute out.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

/** A string usable inside an element id. */
export function domId(...parts) {
  return parts.map((part) => String(part).replace(/[^\w-]/g, '_')).join('-');
}

const TOAST_MS = { error: 8000, success: 3500, info: 5000 };
const TOAST_LIMIT = 4;

/** Shows a message at the bottom right; identical messages on screen are not repeated. */
export function toast(message, { kind = 'info' } = {}) {
  const box = document.getElementById('toasts');
  if (!box) return;
  for (const existing of box.children) {
    if (existing.dataset.message === message) return;
  }
  const close = h('button', { type: 'button', class: 'toast__close', 'aria-label': 'Meldung schließen' }, '×');
  const el = h(
    'div',
    {
      class: `toast toast--${kind}`,
      role: kind === 'error' ? 'alert' : 'status',
      'data-testid': 'toast',
      'data-kind': kind,
    },
    h('span', { class: 'toast__text', text: message }),
    close,
  );
  el.dataset.message = message;
  const timer = setTimeout(() => el.remove(), TOAST_MS[kind] ?? TOAST_MS.info);
  close.addEventListener('click', () => {
    clearTimeout(timer);
    el.remove();
  });
  box.append(el);
  while (box.children.length > TOAST_LIMIT) box.firstElementChild.remove();
}

/**
 * An error toast for a failed API call, `"<context>: <detail>"`. A 401 shows nothing here:
 * the login screen explains it.
 */
export function toastError(err, context) {
  if (err?.status === 401) return;
  const detail = err?.message || 'Unbekannter Fehler.';
  toast(context ? `${context}: ${detail}` : detail, { kind: 'error' });
}

/** Removes every toast (on logout). */
export function clearToasts() {
  document.getElementById('toasts')?.replaceChildren();
}

/**
 * Shows one card per item, in order, reusing the entries kept in `entries` (a Map from id
 * to `{ els: { card } }`). `create(item)` builds the entry of a new item, `update(entry, item)`
 * refreshes a kept one, `refresh(id)` reloads an item's content (new items always, kept ones
 * when `refreshAll`), `remove(id, entry)` drops one no longer listed. Cards move only when out
 * of place, so a focused field inside them keeps its focus. `emptyCard` stands in for none.
 */
export function showCards(container, emptyCard, entries, items, { create, update, refresh, remove, refreshAll = false }) {
  const seen = new Set();
  if (items.length === 0) {
    if (!emptyCard.isConnected) container.prepend(emptyCard);
  } else {
    emptyCard.remove();
  }
  items.forEach((item, index) => {
    const id = String(item.id);
    seen.add(id);
    let entry = entries.get(id);
    if (entry) {
      update(entry, item);
      if (refreshAll) refresh(id);
    } else {
      entry = create(item);
      entries.set(id, entry);
      refresh(id);
    }
    const current = container.children[index] ?? null;
    if (current !== entry.els.card) container.insertBefore(entry.els.card, current);
  });
  for (const [id, entry] of entries) {
    if (!seen.has(id)) remove(id, entry);
  }
}
