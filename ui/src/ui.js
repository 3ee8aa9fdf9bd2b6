// ui.js - small DOM helpers shared by the pages: elements, tables, the alert region, plots.
import uPlot from './lib/uPlot.esm.js';

// el('tag', {attr: v, onclick: fn}, child...): an element; strings become text nodes.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat())
    if (c !== undefined && c !== null && c !== false)
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// The alert region: the API's refusal, verbatim (role="alert": read out at once).
export function showError(err) {
  const a = document.getElementById('alert');
  a.textContent = '';
  if (!err) return;
  const status = err.status ? `${err.status}: ` : '';
  a.append(el('strong', {}, 'Refused or failed. '), status + err.message);
}
export function clearError() { showError(null); }

// Runs fn, showing its error (the API's message) in the alert region; returns its result
// or undefined.
export async function guarded(fn) {
  try {
    const r = await fn();
    clearError();
    return r;
  } catch (e) {
    showError(e);
    return undefined;
  }
}

// A table with a caption; columns: [[heading, row => cell]].
export function table(caption, columns, rows, attrs = {}) {
  return el('table', attrs,
    el('caption', {}, caption),
    el('thead', {}, el('tr', {}, columns.map(([h]) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows.map(r => el('tr', {}, columns.map(([, f]) => el('td', {}, fmt(f(r))))))));
}

export function fmt(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2);
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (v instanceof Node) return v;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function iso(ms) { return ms ? new Date(ms).toISOString().replace('.000Z', 'Z') : '—'; }

// A uPlot line chart in a labelled figure: xs in ms, series [{label, values}].
export function lineChart(title, xs, series, width = 600, height = 220) {
  const fig = el('figure', { class: 'chart' }, el('figcaption', {}, title));
  const colors = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df'];
  const opts = {
    width, height,
    scales: { x: { time: true } },
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2, spanGaps: false }))],
    axes: [{}, { size: 60 }],
  };
  const data = [xs.map(t => t / 1000), ...series.map(s => s.values)];
  const plot = new uPlot(opts, data, fig);
  fig.plot = plot;
  return fig;
}

// A labelled form field: [label, input].
export function field(id, label, input) {
  input.id = id;
  return el('div', { class: 'field' }, el('label', { for: id }, label), input);
}
