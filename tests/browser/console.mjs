// console.mjs - the web console in a real browser: playwright-core (ui/node_modules) drives
// Debian's chromium headless against a server that test_console.py started and filled.
// node console.mjs SCENARIO.json: runs every check, saves a screenshot of each page into
// the scenario's out directory, prints "ok NAME" or "FAIL NAME: why" per check, and exits 1
// if any failed.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', '..', 'ui', 'package.json'));
const { chromium } = require('playwright-core');

const sc = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const base = `http://127.0.0.1:${sc.api_port}`;
fs.mkdirSync(sc.out, { recursive: true });
let failed = 0, passed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.message ? e.message.split('\n')[0] : e}`);
    await page.screenshot({ path: path.join(sc.out, `FAILED-${failed}.png`), fullPage: true }).catch(() => {});
  }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }

async function shot(page, name) {
  await page.screenshot({ path: path.join(sc.out, `${name}.png`), fullPage: true });
}

// Signs in with token and sets the context bar's purpose and ticket.
async function signIn(page, token, purpose, ticket = '') {
  await page.goto(`${base}/ui/`);
  await page.getByLabel('Token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Pages' }).waitFor();
  await page.getByLabel('Purpose').fill(purpose);
  await page.getByLabel(/^Ticket/).fill(ticket);
  await page.getByLabel('Purpose').dispatchEvent('change');
}

async function alertText(page) {
  const a = page.getByRole('alert');
  await a.filter({ hasText: /\S/ }).waitFor({ timeout: 10000 });
  return (await a.textContent()).trim();
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 } });
const page = await ctx.newPage();
const consoleErrors = [];
page.on('pageerror', e => consoleErrors.push(String(e)));
// refused API calls (401, 403) are expected: only script errors count
page.on('console', m => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text()); });

const checks = (await import(path.join(here, 'checks.mjs'))).default;
await checks({ sc, base, page, ctx, check, assert, shot, signIn, alertText });

await check('no errors in the page\'s console', async () => {
  assert(consoleErrors.length === 0, consoleErrors.join(' | '));
});
await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
