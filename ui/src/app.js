// app.js - the console's shell: sign-in (the token in sessionStorage), the context bar
// (purpose and ticket, sent with every read exactly as the API wants them) and the pages,
// one per URL fragment (#fleet, #vehicle, #energy, #privacy, #catalog).
import { call, token, setToken, clearToken } from './api.js';
import { showError, clearError, el } from './ui.js';
import fleet from './pages/fleet.js';
import vehicle from './pages/vehicle.js';
import energy from './pages/energy.js';
import privacy from './pages/privacy.js';
import catalog from './pages/catalog.js';

const pages = { fleet, vehicle, energy, privacy, catalog };
let current = null; // the page shown: {stop()} to end its timers

function $(id) { return document.getElementById(id); }

function signedIn(yes) {
  $('signin').hidden = yes;
  $('nav').hidden = !yes;
  $('context').hidden = !yes;
  $('page').hidden = !yes;
}

async function route() {
  if (current && current.stop) current.stop();
  current = null;
  const page = $('page');
  page.textContent = '';
  if (!token()) {
    signedIn(false);
    $('token').focus();
    return;
  }
  signedIn(true);
  const name = (location.hash || '#fleet').slice(1);
  const p = pages[name] || fleet;
  for (const a of document.querySelectorAll('#nav a'))
    if (a.getAttribute('href') === '#' + name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  clearError();
  const root = el('section', { 'aria-labelledby': 'page-title' });
  page.append(root);
  current = p(root) || null;
  document.title = `${root.querySelector('h2')?.textContent || 'console'} - fleetvault`;
}

$('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  setToken(t);
  $('token').value = '';
  try {
    await call('/stats/history', { purpose: false }); // is the token valid?
  } catch (e) {
    clearToken();
    showError(e);
    $('token').focus();
    return;
  }
  clearError();
  if (!$('ctx-purpose').value) $('ctx-purpose').value = sessionStorage.getItem('fleetvault.purpose') || '';
  route();
});

$('signout').addEventListener('click', () => {
  clearToken();
  sessionStorage.removeItem('fleetvault.purpose');
  $('ctx-purpose').value = '';
  $('ctx-ticket').value = '';
  clearError();
  route();
});

$('ctx-purpose').addEventListener('change', () =>
  sessionStorage.setItem('fleetvault.purpose', $('ctx-purpose').value.trim()));
$('context').addEventListener('submit', (ev) => ev.preventDefault());

window.addEventListener('hashchange', route);
$('ctx-purpose').value = sessionStorage.getItem('fleetvault.purpose') || '';
route();
