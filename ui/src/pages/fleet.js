// pages/fleet.js - the fleet: connected devices, ingest rate, acks and errors over time, from
// the server's own counters (GET /api/v1/stats/history: a valid token, no purpose: counters
// hold no personal data); the device list is a read of personal data (purpose, ticket).
import { call } from '../api.js';
import { el, guarded, table, lineChart, iso } from '../ui.js';

// Per-second rates of cumulative counters between consecutive samples.
function rates(samples, key) {
  const out = [null];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    out.push(dt > 0 ? Math.max(0, samples[i][key] - samples[i - 1][key]) / dt : null);
  }
  return out;
}

export default function fleet(root) {
  const now = el('dl', { class: 'figures', id: 'fleet-now' });
  const charts = el('div', { class: 'charts', id: 'fleet-charts' });
  const devices = el('div', { id: 'fleet-devices' });
  root.append(
    el('h2', { id: 'page-title' }, 'Fleet'),
    el('p', {}, 'The server\'s own counters, sampled every few seconds (no personal data).'),
    now, charts,
    el('h3', {}, 'Devices'),
    el('p', {}, 'Listing devices reads personal data: it is decided for the purpose (and ticket) above.'),
    el('button', { type: 'button', id: 'fleet-list', onclick: () => list() }, 'List devices'),
    devices);

  async function refresh() {
    const h = await guarded(() => call('/stats/history', { purpose: false }));
    if (!h || !h.samples.length) return;
    const s = h.samples, last = s[s.length - 1];
    const rec = rates(s, 'records'), acks = rates(s, 'acks'), errs = rates(s, 'errors');
    const recent = rec.filter(v => v !== null).slice(-3);
    const rate = recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : 0;
    now.replaceChildren(
      el('div', {}, el('dt', {}, 'Connected devices'), el('dd', { id: 'stat-connections' }, String(last.connections))),
      el('div', {}, el('dt', {}, 'Known devices'), el('dd', { id: 'stat-devices' }, String(last.devices))),
      el('div', {}, el('dt', {}, 'Ingest rate (records/s)'), el('dd', { id: 'stat-rate' }, rate.toFixed(1))),
      el('div', {}, el('dt', {}, 'Records stored'), el('dd', { id: 'stat-records' }, String(last.records))),
      el('div', {}, el('dt', {}, 'Acks sent'), el('dd', { id: 'stat-acks' }, String(last.acks))),
      el('div', {}, el('dt', {}, 'Error replies'), el('dd', { id: 'stat-errors' }, String(last.errors))),
      el('div', {}, el('dt', {}, 'Last sample'), el('dd', {}, iso(last.t))));
    const xs = s.map(x => x.t);
    charts.replaceChildren(
      lineChart('Connected devices', xs, [{ label: 'connections', values: s.map(x => x.connections) }], 420, 180),
      lineChart('Ingest (records/s)', xs, [{ label: 'records/s', values: rec }], 420, 180),
      lineChart('Acks and errors (per second)', xs, [{ label: 'acks/s', values: acks }, { label: 'errors/s', values: errs }], 420, 180));
  }

  async function list() {
    const r = await guarded(() => call('/vehicles'));
    if (!r) return;
    devices.replaceChildren(table(`${r.count} devices`, [
      ['Device', d => el('a', { href: '#vehicle', onclick: () => sessionStorage.setItem('fleetvault.device', d.id) }, d.id)],
      ['Type', d => d.client_type], ['Connected', d => d.connected], ['Records', d => d.records],
      ['Last time', d => d.last_time]], r.vehicles, { id: 'devices-table' }));
  }

  refresh();
  const timer = setInterval(refresh, 5000);
  return { stop() { clearInterval(timer); } };
}
