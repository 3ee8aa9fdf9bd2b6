// pages/catalog.js - not yet built.
import { el } from '../ui.js';
export default function catalog(root) {
  root.append(el('h2', { id: 'page-title' }, 'catalog'), el('p', {}, 'Coming next.'));
}
