// pages/privacy.js - the privacy officer's desk: the access log searched (GET /api/v1/audit),
// a data subject's export (Art. 15/20: a tar download) and erasure (Art. 17), and the second
// person's approval of a bulk export. Each is decided and audited by the server for the
// role and ticket (docs/privacy.md); the page only asks.
import { call, ApiError, url, token } from '../api.js';
import { el, guarded, table, field, iso, showError, clearError } from '../ui.js';

const SHOWN = new Set(['seq', 'ts', 'prev', 'hash', 'kind', 'principal', 'role', 'action', 'purpose',
  'ticket', 'result', 'subjects', 'reason']);
// The rest of an entry (the export's id, rows, ...), as compact JSON.
function details(e) {
  const rest = Object.fromEntries(Object.entries(e).filter(([k]) => !SHOWN.has(k)));
  return Object.keys(rest).length ? JSON.stringify(rest) : '';
}

function input(attrs = {}) { return el('input', { autocomplete: 'off', ...attrs }); }

async function download(path, name) {
  const r = await fetch(url(path), { headers: { Authorization: 'Bearer ' + token() }, cache: 'no-store' });
  if (!r.ok) {
    const text = await r.text();
    let msg = text;
    try { msg = JSON.parse(text).error || text; } catch (_) { /* the text */ }
    throw new ApiError(r.status, msg);
  }
  const blob = await r.blob();
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  return blob.size;
}

export default function privacy(root) {
  const f = { principal: input(), subject: input(), action: input({ size: 16 }), result: el('select', {},
    ['', 'allow', 'deny', 'pending', 'error'].map(v => el('option', { value: v }, v || 'any'))), limit: input({ type: 'number', min: 1, max: 1000, value: 100 }) };
  const results = el('div', { id: 'audit-results' });
  const dev = input({ size: 20 });
  const confirm = el('input', { type: 'checkbox', id: 'erase-confirm' });
  const subjectOut = el('p', { id: 'subject-result', 'aria-live': 'polite' });
  const exp = input({ size: 34 });
  const expOut = el('p', { id: 'export-result', 'aria-live': 'polite' });
  const pendingOut = el('div', { id: 'pending-exports' });

  root.append(
    el('h2', { id: 'page-title' }, 'Privacy'),
    el('p', { class: 'note' }, 'Privacy officers: every action here needs the role\'s action and a ticket (the bar above), and is written to the audit log first.'),
    el('h3', {}, 'Audit search'),
    el('form', { class: 'row', id: 'audit-form', onsubmit: (e) => { e.preventDefault(); search(); } },
      field('audit-principal', 'Principal', f.principal), field('audit-subject', 'Subject (device id or pseudonym)', f.subject),
      field('audit-action', 'Action (e.g. query.raw)', f.action), field('audit-result', 'Result', f.result),
      field('audit-limit', 'Newest entries', f.limit), el('button', { type: 'submit' }, 'Search')),
    results,
    el('h3', {}, 'Data subject requests'),
    el('form', { class: 'row', onsubmit: (e) => e.preventDefault() },
      field('subject-device', 'Device id', dev),
      el('button', { type: 'button', onclick: () => exportSubject() }, 'Export subject data'),
      el('span', {}, confirm, el('label', { for: 'erase-confirm' }, ' I confirm the erasure')),
      el('button', { type: 'button', onclick: () => erase() }, 'Erase subject')),
    subjectOut,
    el('h3', {}, 'Bulk export approvals'),
    el('p', { class: 'note' }, 'A bulk export above its role\'s threshold waits for a second principal of a role that approves exports (never its requester). The pending ones are listed with who asked, for which purpose and ticket, and how many vehicles; the listing is audited (export.list).'),
    el('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); approve(); } },
      field('export-id', 'Export id', exp),
      el('button', { type: 'button', class: 'secondary', onclick: () => pending() }, 'Show pending requests'),
      el('button', { type: 'submit' }, 'Approve export')),
    pendingOut,
    expOut);

  async function search(extra = {}) {
    const params = { principal: f.principal.value.trim(), subject: f.subject.value.trim(), action: f.action.value.trim(), result: f.result.value, limit: f.limit.value, ...extra };
    const r = await guarded(() => call('/audit', { params }));
    if (!r) { results.replaceChildren(); return; }
    results.replaceChildren(table(`${r.count} entries` + (r.truncated ? ` (newest of ${r.matched})` : ''), [
      ['Time', e => iso(e.ts)], ['Principal', e => e.principal], ['Role', e => e.role], ['Action', e => e.action],
      ['Purpose', e => e.purpose], ['Ticket', e => e.ticket], ['Result', e => e.result],
      ['Subjects', e => (e.subjects || []).join(' ')], ['Reason', e => e.reason], ['Details', details]],
    r.entries, { id: 'audit-table' }));
  }

  async function pending() {
    const r = await guarded(() => call('/exports', { purpose: false }));
    if (!r) { pendingOut.replaceChildren(); return; }
    pendingOut.replaceChildren(table(`${r.count} exports waiting for approval`, [
      ['Export', x => x.id], ['Requester', x => x.requester], ['Role', x => x.role],
      ['Purpose', x => x.purpose], ['Ticket', x => x.ticket || '—'], ['Vehicles', x => x.vehicles],
      ['Signals', x => x.signals.join(', ')], ['Asked', x => iso(x.created_ms)],
      ['', x => el('button', { type: 'button', class: 'secondary', 'aria-label': `Approve export ${x.id}`,
        onclick: () => { exp.value = x.id; approve(); } }, 'Approve')]],
    r.exports, { id: 'pending-table' }));
  }

  async function exportSubject() {
    const id = dev.value.trim();
    if (!id) return;
    const n = await guarded(() => download(`/subjects/${encodeURIComponent(id)}/export`, `subject-${id}.tar`));
    subjectOut.textContent = n === undefined ? '' : `Export of ${id} downloaded (${n} bytes).`;
  }

  async function erase() {
    const id = dev.value.trim();
    if (!id) return;
    if (!confirm.checked) {
      showError(new Error('Tick "I confirm the erasure" first: erasure cannot be undone.'));
      return;
    }
    const r = await guarded(() => call(`/subjects/${encodeURIComponent(id)}/erase`, { method: 'POST' }));
    confirm.checked = false;
    subjectOut.textContent = r ? `${id}: erased. ${r.purge}.` : '';
  }

  async function approve() {
    const id = exp.value.trim();
    if (!id) return;
    const r = await guarded(() => call(`/exports/${encodeURIComponent(id)}/approve`, { method: 'POST', purpose: false, params: { ticket: document.getElementById('ctx-ticket').value.trim() } }));
    expOut.textContent = r ? `Export ${r.id}: ${r.status}${r.approved_by ? ` by ${r.approved_by}` : ''}.` : '';
    if (r && pendingOut.firstChild) await pending(); // the list without it
  }
  clearError();
}
