// pages/vehicle.js - one vehicle: its signals plotted over a chosen range, downsampled by the
// store (GET /api/v1/query with step and agg=avg), and its track drawn on a plain canvas (no
// map tiles) from the raw Location rows as the server serves them to this principal: with
// zones, trip-end trimming and coarsening applied by the server (docs/privacy.md). A point
// the server withholds comes as null; the page draws the stretch it hides as withheld and
// counts it.
import { call } from '../api.js';
import { el, guarded, lineChart, field, iso } from '../ui.js';

const RANGES = [['15 minutes', 15 * 60e3], ['1 hour', 3600e3], ['6 hours', 6 * 3600e3],
  ['24 hours', 24 * 3600e3], ['7 days', 7 * 86400e3], ['30 days', 30 * 86400e3]];
const POINTS = 600; // buckets per plot: the store downsamples to about this many

// A step the query API takes ("Ns"), making about POINTS buckets of the range.
export function stepFor(rangeMs) {
  return `${Math.max(1, Math.ceil(rangeMs / POINTS / 1000))}s`;
}

// Splits Location rows into runs: {served: [[lon, lat, t]...]} (one line each) or
// {withheld: n, t0, t1}.
export function runs(rows) {
  const out = [];
  for (const r of rows) {
    const loc = r.Location;
    const last = out[out.length - 1];
    if (loc && typeof loc.latitude === 'number') {
      // a new line after a withheld stretch, or after a gap of over 5 minutes (a new trip)
      if (!last || !last.served || r.t - last.served[last.served.length - 1][2] > 300000)
        out.push({ served: [] });
      out[out.length - 1].served.push([loc.longitude, loc.latitude, r.t]);
    } else {
      if (!last || !last.withheld) out.push({ withheld: 0, t0: r.t });
      const w = out[out.length - 1];
      w.withheld++;
      w.t1 = r.t;
    }
  }
  return out;
}

function drawTrips(canvas, parts) {
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  const pts = parts.filter(p => p.served).flatMap(p => p.served);
  if (!pts.length) {
    g.fillStyle = '#a40e26';
    g.font = '16px system-ui, sans-serif';
    g.fillText('No location served in this range for this purpose', 20, 40);
    return;
  }
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of pts) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180); // equirectangular: metres per degree
  const pad = 30, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
  const sx = (x1 - x0) * k || 1e-4, sy = (y1 - y0) || 1e-4, s = Math.min(w / sx, h / sy);
  const X = x => pad + ((x - x0) * k) * s + (w - sx * s) / 2;
  const Y = y => canvas.height - pad - (y - y0) * s - (h - sy * s) / 2;
  // withheld stretches: a dashed red line between the served points around them
  g.setLineDash([6, 5]);
  g.strokeStyle = '#a40e26';
  g.lineWidth = 2;
  for (let i = 0; i < parts.length; i++) {
    if (!parts[i].withheld) continue;
    const before = parts[i - 1]?.served, after = parts[i + 1]?.served;
    const a = before && before[before.length - 1], b = after && after[0];
    if (a && b) { g.beginPath(); g.moveTo(X(a[0]), Y(a[1])); g.lineTo(X(b[0]), Y(b[1])); g.stroke(); }
    for (const p of [a, b].filter(Boolean)) { g.beginPath(); g.arc(X(p[0]), Y(p[1]), 7, 0, 2 * Math.PI); g.stroke(); }
    const at = a || b;
    if (at) {
      g.fillStyle = '#a40e26';
      g.font = '13px system-ui, sans-serif';
      g.fillText(`${parts[i].withheld} withheld`, X(at[0]) + 10, Y(at[1]) + (a && !b ? 16 : -8));
    }
  }
  g.setLineDash([]);
  g.strokeStyle = '#1f6feb';
  g.lineWidth = 3;
  for (const p of parts.filter(q => q.served)) {
    g.beginPath();
    p.served.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
    if (p.served.length === 1) g.arc(X(p.served[0][0]), Y(p.served[0][1]), 3, 0, 2 * Math.PI);
    g.stroke();
  }
}

export default function vehicle(root) {
  const dev = el('input', { required: true, list: 'vehicle-ids', autocomplete: 'off', size: 20 });
  dev.value = sessionStorage.getItem('fleetvault.device') || '';
  const ids = el('datalist', { id: 'vehicle-ids' });
  const range = el('select', {}, RANGES.map(([l, ms]) => el('option', { value: ms }, l)));
  range.value = String(3600e3);
  const sigs = el('input', { size: 28 });
  sigs.value = 'VehicleSpeed,Soc';
  const plot = el('div', { id: 'vehicle-plot' });
  const summary = el('p', { id: 'trip-summary', 'aria-live': 'polite' });
  const canvas = el('canvas', { class: 'trips', id: 'trips', width: 900, height: 420,
    role: 'img', 'aria-label': 'Trips of the vehicle: served positions as blue lines, withheld stretches dashed red' });
  root.append(
    el('h2', { id: 'page-title' }, 'Vehicle'),
    el('form', { class: 'row', id: 'vehicle-form', onsubmit: (e) => { e.preventDefault(); show(); } },
      field('vehicle-id', 'Vehicle (id or pseudonym)', dev), ids,
      field('vehicle-range', 'Range (until now)', range),
      field('vehicle-signals', 'Signals (comma-separated)', sigs),
      el('button', { type: 'submit' }, 'Show')),
    el('h3', {}, 'Signals'), plot,
    el('h3', {}, 'Trips'),
    el('div', { class: 'legend' }, el('span', {}, '— blue: positions served'),
      el('span', { class: 'withheld' }, '- - red: withheld by the server (privacy zones, trip ends, stops)')),
    summary, canvas);

  guarded(async () => { // the ids for the datalist (a read like any other: purpose-bound)
    const r = await call('/vehicles');
    ids.replaceChildren(...r.vehicles.map(v => el('option', { value: v.id })));
  });

  async function show() {
    const id = dev.value.trim();
    if (!id) return;
    sessionStorage.setItem('fleetvault.device', id);
    const to = Date.now(), span = Number(range.value), from = to - span;
    const signals = sigs.value.split(',').map(s => s.trim()).filter(Boolean).join(',');
    const agg = await guarded(() => call('/query', { params: { device: id, signals, from, to, step: stepFor(span), agg: 'avg' } }));
    if (!agg) { plot.replaceChildren(); summary.textContent = ''; drawTrips(canvas, []); return; }
    const names = agg.signals || signals.split(',');
    const rows = agg.rows || [];
    plot.replaceChildren(rows.length
      ? lineChart(`${names.join(', ')} (average per ${agg.step / 1000} s, ${rows.length} buckets)`,
          rows.map(r => r.t), names.map(n => ({ label: n, values: rows.map(r => (typeof r[n] === 'number' ? r[n] : null)) })), 900, 260)
      : el('p', { id: 'vehicle-nodata' }, 'No values in this range.'));
    const loc = await guarded(() => call('/query', { params: { device: id, signals: 'Location', from, to, limit: 50000 } }));
    if (!loc) return;
    const parts = runs(loc.rows || []);
    const served = parts.filter(p => p.served).reduce((n, p) => n + p.served.length, 0);
    const withheld = parts.filter(p => p.withheld).reduce((n, p) => n + p.withheld, 0);
    summary.replaceChildren(
      `${served + withheld} positions from ${iso(from)} to ${iso(to)}: `,
      el('span', { id: 'trip-served' }, String(served)), ' served, ',
      el('span', { id: 'trip-withheld', class: withheld ? 'withheld' : '' }, String(withheld)),
      ' withheld by the server', loc.truncated ? ' (first 50,000 only)' : '', '.');
    drawTrips(canvas, parts);
  }
  if (dev.value) show();
}
