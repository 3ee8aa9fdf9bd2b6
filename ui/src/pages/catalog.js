// pages/catalog.js - data-collection campaigns (GET /api/v1/campaigns: purpose clips, counts
// only) and training datasets (GET /api/v1/datasets: purpose model_training), list and
// status. The purpose comes from the bar above, as for every read; the server refuses any
// other, and the page shows its words.
import { call } from '../api.js';
import { el, guarded, table, iso, fmt } from '../ui.js';

export default function catalog(root) {
  const camps = el('div', { id: 'campaigns' });
  const status = el('div', { id: 'campaign-status' });
  const sets = el('div', { id: 'datasets' });
  root.append(
    el('h2', { id: 'page-title' }, 'Campaigns and datasets'),
    el('h3', {}, 'Campaigns'),
    el('p', { class: 'note' }, 'Read for purpose clips: counts only, never a vehicle.'),
    el('button', { type: 'button', onclick: () => campaigns() }, 'List campaigns'),
    camps, status,
    el('h3', {}, 'Datasets'),
    el('p', { class: 'note' }, 'Read for purpose model_training.'),
    el('button', { type: 'button', onclick: () => datasets() }, 'List datasets'),
    sets);

  async function campaigns() {
    const r = await guarded(() => call('/campaigns'));
    if (!r) { camps.replaceChildren(); return; }
    camps.replaceChildren(table(`${r.campaigns.length} campaigns`, [
      ['Campaign', c => c.id], ['Name', c => c.name], ['State', c => c.state], ['Created', c => iso(c.created_ms)],
      ['Targeted', c => c.targeted], ['Delivered', c => c.delivered], ['Hits', c => c.hits],
      ['Clips', c => c.clips_uploaded], ['Bytes', c => c.bytes],
      ['', c => el('button', { type: 'button', class: 'secondary', onclick: () => show(c.id) }, `Status of ${c.id}`)]],
    r.campaigns, { id: 'campaigns-table' }));
  }

  async function show(id) {
    const c = await guarded(() => call(`/campaigns/${encodeURIComponent(id)}`));
    if (!c) { status.replaceChildren(); return; }
    status.replaceChildren(el('h4', {}, `Campaign ${c.name} (${c.state})`),
      el('dl', { class: 'figures', id: 'campaign-figures' },
        ...Object.entries(c).filter(([k, v]) => typeof v === 'number' && !k.endsWith('_ms'))
          .map(([k, v]) => el('div', {}, el('dt', {}, k.replace(/_/g, ' ')), el('dd', { 'data-key': k }, fmt(v))))),
      c.spec ? el('pre', { class: 'note', id: 'campaign-spec' }, JSON.stringify(c.spec, null, 1)) : '');
  }

  async function datasets() {
    const r = await guarded(() => call('/datasets'));
    if (!r) { sets.replaceChildren(); return; }
    const rows = r.datasets.flatMap(d => d.versions.map(v => ({ name: d.name, ...v })));
    sets.replaceChildren(table(`${r.datasets.length} datasets, ${rows.length} versions`, [
      ['Dataset', x => x.name], ['Version', x => `v${x.version}`], ['Created', x => iso(x.created_ms)],
      ['Samples', x => x.samples], ['Shards', x => x.shards], ['Bytes', x => x.bytes],
      ['Subjects withdrawn since', x => x.withdrawn_subjects]], rows, { id: 'datasets-table' }));
  }
}
