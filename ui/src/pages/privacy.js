// pages/privacy.js - not yet built.
import { el } from '../ui.js';
export default function privacy(root) {
  root.append(el('h2', { id: 'page-title' }, 'privacy'), el('p', {}, 'Coming next.'));
}
