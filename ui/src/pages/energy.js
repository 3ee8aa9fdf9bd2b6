// pages/energy.js - the virtual power plant: events (delivered vs target, live while an event
// runs), the enrolled sites and why a site falls short, and an event's settlement with a CSV
// download. Every call is the VPP API's (src/api/vpp_api.c): a purpose-bound read of energy
// sites, named as the caller's obligations say (pseudonyms for pseudonymising roles).
import { call } from '../api.js';
import { el, guarded, table, lineChart, field, iso, fmt } from '../ui.js';

export default function energy(root) {
  const prog = el('input', { required: true, size: 14 });
  prog.value = sessionStorage.getItem('fleetvault.program') || 'test';
  const events = el('div', { id: 'vpp-events' });
  const detail = el('div', { id: 'vpp-event' });
  const sites = el('div', { id: 'vpp-sites' });
  const settle = el('div', { id: 'vpp-settlement' });
  let timer = null;

  root.append(
    el('h2', { id: 'page-title' }, 'Energy'),
    el('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); load(); } },
      field('vpp-program', 'Program', prog), el('button', { type: 'submit' }, 'Load')),
    el('h3', {}, 'Events'), events, detail,
    el('h3', {}, 'Sites'), sites,
    el('h3', {}, 'Settlement'), settle);

  async function load() {
    sessionStorage.setItem('fleetvault.program', prog.value.trim());
    const ev = await guarded(() => call('/vpp/events'));
    if (!ev) return;
    const list = ev.events.filter(e => e.program === prog.value.trim());
    events.replaceChildren(table(`${list.length} events of program ${prog.value.trim()}`, [
      ['Event', e => e.id], ['Start', e => iso(e.start)], ['End', e => iso(e.end)],
      ['Target kW', e => (e.max ? 'as much as possible' : e.target_kw)], ['State', e => e.state],
      ['', e => el('span', {},
        el('button', { type: 'button', class: 'secondary', onclick: () => showEvent(e.id) }, `Status of ${e.id}`), ' ',
        el('button', { type: 'button', class: 'secondary', onclick: () => settlement(e.id) }, `Settlement of ${e.id}`))],
    ], list, { id: 'events-table' }));
    const s = await guarded(() => call('/vpp/sites', { params: { program: prog.value.trim() } }));
    if (s) sites.replaceChildren(table(`${s.count} sites enrolled` + (s.sites_withheld ? `, ${s.sites_withheld} withheld (no consent)` : ''), [
      ['Site', x => x.site], ['Online', x => x.online], ['Battery kW', x => x.latest?.battery_kw],
      ['Stored kWh', x => x.latest?.energy_kwh], ['Capacity kWh', x => x.latest?.capacity_kwh],
      ['Solar kW', x => x.latest?.solar_kw], ['Load kW', x => x.latest?.load_kw],
      ['Last sample', x => iso(x.latest?.received_ms)]], s.sites, { id: 'sites-table' }));
  }

  async function showEvent(id) {
    clearInterval(timer);
    const draw = async () => {
      const e = await guarded(() => call(`/vpp/events/${encodeURIComponent(id)}`));
      if (!e) { clearInterval(timer); return; }
      const tr = e.tracking || [];
      detail.replaceChildren(
        el('h4', {}, `Event ${e.id} (${e.state})`),
        el('dl', { class: 'figures', id: 'event-figures' },
          el('div', {}, el('dt', {}, 'Target kW'), el('dd', { id: 'ev-target' }, e.max ? 'max' : fmt(e.target_kw))),
          el('div', {}, el('dt', {}, 'Planned kW'), el('dd', { id: 'ev-planned' }, fmt(e.planned_kw))),
          el('div', {}, el('dt', {}, 'Delivered kW (now)'), el('dd', { id: 'ev-delivered' }, fmt(e.delivered_kw))),
          el('div', {}, el('dt', {}, 'Deliverable kW'), el('dd', {}, fmt(e.deliverable_kw))),
          el('div', {}, el('dt', {}, 'Feasible'), el('dd', {}, fmt(e.feasible)))),
        tr.length > 1
          ? lineChart('Delivered vs target (kW)', tr.map(x => x.t), [
            { label: 'target kW', values: tr.map(x => x.target_kw) },
            { label: 'delivered kW', values: tr.map(x => x.delivered_kw) }], 700, 220)
          : el('p', { class: 'note' }, 'No tracking samples yet.'),
        table(`Sites in the event${e.sites_withheld ? ` (${e.sites_withheld} withheld: no consent)` : ''}`, [
          ['Site', x => x.site], ['Setpoint kW', x => x.setpoint_kw], ['Battery kW', x => x.battery_kw],
          ['Acked', x => x.acked], ['Status', x => x.status], ['Shortfall reason', x => x.reason]],
        e.sites || [], { id: 'event-sites' }));
      if (e.state !== 'active' && e.state !== 'scheduled') clearInterval(timer);
    };
    await draw();
    timer = setInterval(draw, 3000);
  }

  async function settlement(id) {
    const r = await guarded(() => call(`/vpp/events/${encodeURIComponent(id)}/settlement`, { params: { format: 'json' } }));
    if (!r) { settle.replaceChildren(); return; }
    const cols = ['site', 'method', 'baseline_kwh', 'metered_kwh', 'incremental_kwh', 'rate', 'payment', 'note'];
    settle.replaceChildren(
      table(`Settlement of event ${id}: ${r.rows.length} sites`, cols.map(c => [c.replace(/_/g, ' '), x => x[c]]),
        [...r.rows, { site: 'total', ...r.total }], { id: 'settlement-table' }),
      el('button', { type: 'button', id: 'settlement-csv', onclick: () => download(id) }, 'Download CSV'));
  }

  async function download(id) {
    const csv = await guarded(() => call(`/vpp/events/${encodeURIComponent(id)}/settlement`, { params: { format: 'csv' }, raw: true }));
    if (csv === undefined) return;
    const a = el('a', { href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })), download: `settlement-${id}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  load();
  return { stop() { clearInterval(timer); } };
}
