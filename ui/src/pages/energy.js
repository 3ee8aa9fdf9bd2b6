// pages/energy.js - not yet built.
import { el } from '../ui.js';
export default function energy(root) {
  root.append(el('h2', { id: 'page-title' }, 'energy'), el('p', {}, 'Coming next.'));
}
