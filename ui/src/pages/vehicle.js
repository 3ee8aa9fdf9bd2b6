// pages/vehicle.js - not yet built.
import { el } from '../ui.js';
export default function vehicle(root) {
  root.append(el('h2', { id: 'page-title' }, 'vehicle'), el('p', {}, 'Coming next.'));
}
