// api.js - the console's calls to fleetvault's JSON API: the bearer token from session
// storage (never a URL, never localStorage), the purpose and ticket from the context bar.
const KEY = 'fleetvault.token';

export function token() { return sessionStorage.getItem(KEY); }
export function setToken(t) { sessionStorage.setItem(KEY, t); }
export function clearToken() { sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The purpose and ticket the user typed (the context bar); the API decides what they allow.
export function context() {
  return {
    purpose: document.getElementById('ctx-purpose').value.trim(),
    ticket: document.getElementById('ctx-ticket').value.trim(),
  };
}

// Builds /api/v1/PATH?params, adding purpose and ticket when withPurpose.
export function url(path, params = {}, withPurpose = true) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  if (withPurpose) {
    const c = context();
    if (c.purpose) q.set('purpose', c.purpose);
    if (c.ticket) q.set('ticket', c.ticket);
  }
  const s = q.toString();
  return '/api/v1' + path + (s ? '?' + s : '');
}

// GET or POST; resolves to the parsed JSON (or text when raw), rejects with ApiError whose
// message is the API's own "error" text, verbatim.
export async function call(path, { params = {}, purpose = true, method = 'GET', body, raw = false } = {}) {
  const headers = { Authorization: 'Bearer ' + (token() || '') };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(url(path, params, purpose), {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store', credentials: 'omit',
  });
  const text = await r.text();
  if (!r.ok) {
    let msg = text;
    try { msg = JSON.parse(text).error || text; } catch (_) { /* not JSON: the text */ }
    throw new ApiError(r.status, msg);
  }
  if (raw) return text;
  return text ? JSON.parse(text) : {};
}
