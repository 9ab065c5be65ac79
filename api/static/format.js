/**
 * Display formatting for the dashboard: server times as local clock times, API error details.
 */

const TIME_ZONE_SUFFIX = /(Z|[+-]\d{2}:?\d{2})$/i;

/**
 * A server timestamp as a Date, or null. Timestamps without an offset are read as UTC
 * (the server stores UTC; a browser would otherwise read them as local time).
 */
export function parseServerTime(value) {
  if (value === null || value === undefined || value === '') return null;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value;
  const text = String(value);
  const hasTime = text.includes('T') || text.includes(' ');
  const date = new Date(hasTime && !TIME_ZONE_SUFFIX.test(text) ? `${text}Z` : text);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "13:30" in the browser's time zone (or `timeZone`); '' when the value is no time. */
export function formatClock(value, { timeZone } = {}) {
  const date = parseServerTime(value);
  if (!date) return '';
  return new Intl.DateTimeFormat('de-DE', { hour: '2-digit', minute: '2-digit', timeZone }).format(date);
}

/** "seit 13:30", or '' when the value is no time. */
export function formatSince(value, options = {}) {
  const clock = formatClock(value, options);
  return clock ? `seit ${clock}` : '';
}

/** The readable message in an error body `{"detail": …}` (string, validation list or object). */
export function errorDetail(body, status) {
  const detail = body && typeof body === 'object' ? body.detail : body;
  if (typeof detail === 'string' && detail.trim()) return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail
      .map((item) => (item && typeof item === 'object' ? item.msg ?? JSON.stringify(item) : String(item)))
      .join('; ');
  }
  if (detail && typeof detail === 'object') return detail.message ?? JSON.stringify(detail);
  return status ? `Anfrage fehlgeschlagen (HTTP ${status}).` : 'Anfrage fehlgeschlagen.';
}

/** Sort order for people: German collation, case-insensitive ("Ähm" next to "Ahm"). */
export function compareNames(a, b) {
  return String(a ?? '').localeCompare(String(b ?? ''), 'de', { sensitivity: 'base' });
}
