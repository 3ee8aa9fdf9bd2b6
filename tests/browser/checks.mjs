// checks.mjs - what the console must show (console.mjs runs these in order). Each check
// reads what the page shows and compares it with what the scenario (test_console.py) knows
// of the simulated fleet, so a broken page fails it.
export default async function checks({ sc, base, page, ctx, check, assert, shot, signIn, alertText }) {
  await check('static files carry the console headers, and no file outside /ui/ is served', async () => {
    const r = await page.request.get(`${base}/ui/app.js`);
    assert(r.status() === 200, `app.js: ${r.status()}`);
    const h = r.headers();
    assert(h['content-type'].startsWith('text/javascript'), h['content-type']);
    assert(h['content-security-policy'].includes("default-src 'self'"), h['content-security-policy']);
    assert(h['x-content-type-options'] === 'nosniff', 'nosniff');
    assert(h['cache-control'] === 'no-cache', h['cache-control']);
    const bad = await page.request.get(`${base}/ui/missing.js`);
    assert(bad.status() === 404, `missing: ${bad.status()}`);
  });

  await check('a wrong token is refused, with the API\'s message', async () => {
    await page.goto(`${base}/ui/`);
    await page.getByLabel('Token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const t = await alertText(page);
    assert(/401/.test(t), t);
    assert(await page.getByLabel('Token').isVisible(), 'still on the sign-in form');
    const stored = await page.evaluate(() => [sessionStorage.length, localStorage.length]);
    assert(stored[0] === 0 && stored[1] === 0, `storage after a refusal: ${stored}`);
  });

  await check('fleet: the counters of the simulated fleet', async () => {
    await signIn(page, sc.tokens.ops, 'service');
    await page.getByRole('heading', { name: 'Fleet', level: 2 }).waitFor();
    const conn = page.locator('#stat-connections');
    await conn.waitFor();
    const n = Number(await conn.textContent());
    assert(n >= sc.connected_min, `connected devices shown: ${n}, want >= ${sc.connected_min}`);
    const rec = Number(await page.locator('#stat-records').textContent());
    assert(rec >= sc.records_min, `records shown: ${rec}, want >= ${sc.records_min}`);
    const acks = Number(await page.locator('#stat-acks').textContent());
    assert(acks >= sc.records_min, `acks shown: ${acks}`);
    assert(await page.locator('#fleet-charts figure canvas').count() === 3, 'three plots');
    const before = await conn.elementHandle(); // refreshed by itself every 5 s
    await page.waitForFunction(e => !e.isConnected, before, { timeout: 10000 });
    // the token is in sessionStorage, never in the URL or localStorage
    assert(!page.url().includes(sc.tokens.ops), 'token in the URL');
    const ls = await page.evaluate(() => JSON.stringify(localStorage));
    assert(!ls.includes(sc.tokens.ops), 'token in localStorage');
  });

  await check('fleet: the device list, read for a purpose', async () => {
    await page.getByRole('button', { name: 'List devices' }).click();
    const t = page.locator('#devices-table');
    await t.waitFor();
    for (const id of sc.devices)
      assert(await t.getByText(id, { exact: true }).count() === 1, `device ${id} not listed`);
    await shot(page, 'fleet');
  });

  await check('fleet: a purpose the role lacks is refused with the API\'s message', async () => {
    await page.getByLabel('Purpose').fill('model_training');
    await page.getByRole('button', { name: 'List devices' }).click();
    const t = await alertText(page);
    const want = sc.refusals.vehicles_model_training;
    assert(t.includes(want), `alert "${t}" lacks the API's "${want}"`);
    await shot(page, 'fleet-refused');
    await page.getByLabel('Purpose').fill('service');
  });

  await check('vehicle: signals plotted, downsampled by the store', async () => {
    await page.getByRole('link', { name: 'Vehicle' }).click();
    await page.getByRole('heading', { name: 'Vehicle', level: 2 }).waitFor();
    await page.getByLabel('Vehicle (id or pseudonym)').fill(sc.devices.find(d => d !== sc.track));
    await page.getByLabel('Range (until now)').selectOption({ label: '1 hour' });
    await page.getByRole('button', { name: 'Show' }).click();
    const cap = page.locator('#vehicle-plot figcaption');
    await cap.waitFor();
    const m = /\(average per (\d+) s, (\d+) buckets\)/.exec(await cap.textContent());
    assert(m, `caption: ${await cap.textContent()}`);
    // an hour of 1 Hz history in 6 s buckets: about 600 of them, not 3600 raw rows
    assert(Number(m[1]) === 6 && Number(m[2]) >= 500 && Number(m[2]) <= 601, `buckets: ${m[0]}`);
    assert(await page.locator('#vehicle-plot canvas').count() >= 1, 'no plot');
    const served = Number(await page.locator('#trip-served').textContent());
    assert(served >= 3000, `positions served to ops: ${served}`);
    await shot(page, 'vehicle');
  });

  await check('vehicle: service reads see the whole track (nothing withheld)', async () => {
    await page.getByLabel('Vehicle (id or pseudonym)').fill(sc.track);
    await page.getByRole('button', { name: 'Show' }).click();
    await page.locator('#trip-served').filter({ hasText: '30' }).waitFor({ timeout: 10000 });
    const w = await page.locator('#trip-withheld').textContent();
    assert(w === '0', `withheld for ops: ${w}`);
  });

  await check('vehicle: a role that needs a ticket is refused without one, verbatim', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(page, sc.tokens.viewer, 'service', '');
    await page.goto(`${base}/ui/#vehicle`);
    await page.getByLabel('Vehicle (id or pseudonym)').fill(sc.track);
    await page.getByRole('button', { name: 'Show' }).click();
    const t = await alertText(page);
    assert(t.includes(sc.refusals.query_no_ticket), `alert "${t}" lacks "${sc.refusals.query_no_ticket}"`);
    assert(await page.locator('#vehicle-plot canvas').count() === 0, 'a plot despite the refusal');
  });

  await check('vehicle: the privacy zone and trip ends are shown as withheld', async () => {
    await page.getByLabel(/^Ticket/).fill('T-1');
    await page.getByRole('button', { name: 'Show' }).click();
    const w = page.locator('#trip-withheld');
    await w.filter({ hasText: String(sc.track_withheld) }).waitFor({ timeout: 10000 });
    const served = Number(await page.locator('#trip-served').textContent());
    assert(served === 30 - sc.track_withheld, `served ${served}`);
    assert((await page.locator('#alert').textContent()).trim() === '', 'an alert after a good read');
    // the canvas has the withheld (red, dashed) stretch drawn
    const red = await page.locator('#trips').evaluate(c => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] > 150 && d[i + 1] < 60 && d[i + 2] < 80) n++;
      return n;
    });
    assert(red > 20, `withheld stretch not drawn (${red} red pixels)`);
    await shot(page, 'vehicle-withheld');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(page, sc.tokens.ops, 'service');
  });

  await check('energy: events, sites, and the live event delivered vs target', async () => {
    const en = sc.energy;
    await page.getByRole('link', { name: 'Energy' }).click();
    await page.getByRole('heading', { name: 'Energy', level: 2 }).waitFor();
    await page.getByLabel('Program').fill('test');
    await page.getByRole('button', { name: 'Load' }).click();
    const ev = page.locator('#events-table');
    await ev.waitFor();
    for (const id of [en.done, en.live])
      assert(await ev.getByText(id, { exact: true }).count() === 1, `event ${id} not listed`);
    const sites = page.locator('#sites-table');
    await sites.waitFor();
    for (const id of en.sites)
      assert(await sites.getByText(id, { exact: true }).count() === 1, `site ${id} not listed`);
    await page.getByRole('button', { name: `Status of ${en.live}` }).click();
    await page.locator('#ev-target').waitFor();
    assert(await page.locator('#ev-target').textContent() === '6', 'target');
    const d = Number(await page.locator('#ev-delivered').textContent());
    assert(d > 0, `delivered ${d}`);
    const rows = await page.locator('#event-sites tbody tr').count();
    assert(rows === en.sites.length, `sites in the event: ${rows}`);
    // live: the status is drawn again by itself (every 3 s) while the event runs
    const before = await page.locator('#ev-delivered').elementHandle();
    await page.waitForFunction(e => !e.isConnected, before, { timeout: 8000 });
    await shot(page, 'energy');
  });

  await check('energy: the settlement table and its CSV, as the API gives them', async () => {
    const en = sc.energy;
    await page.getByRole('button', { name: `Settlement of ${en.done}` }).click();
    const tb = page.locator('#settlement-table');
    await tb.waitFor();
    assert(await tb.locator('tbody tr').count() === en.sites.length + 1, 'rows + total');
    const total = tb.locator('tbody tr').last();
    const cells = await total.locator('td').allTextContents();
    const want = (v) => (Number.isInteger(Number(v)) ? String(Number(v)) : Number(v).toFixed(2));
    assert(cells[0] === 'total' && cells[3] === want(en.total.metered_kwh) && cells[6] === want(en.total.payment),
      `total row ${cells} vs ${JSON.stringify(en.total)}`);
    const notes = await tb.locator('tbody tr td:nth-child(8)').allTextContents();
    assert(notes.slice(0, -1).every((n, i) => n === (en.notes[i] ?? '—')), `notes ${notes} vs ${en.notes}`);
    const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    const fs = await import('node:fs');
    const got = fs.readFileSync(await dl.path(), 'utf8');
    assert(got === en.csv, `CSV differs: ${got.slice(0, 120)}`);
    await shot(page, 'energy-settlement');
  });

  await check('energy: purpose billing is refused an event\'s status, verbatim', async () => {
    await page.getByLabel('Purpose').fill('billing');
    await page.getByRole('button', { name: `Status of ${sc.energy.live}` }).click();
    const t = await alertText(page);
    assert(t.includes(sc.energy.refusal_billing), `alert "${t}" lacks "${sc.energy.refusal_billing}"`);
    await page.getByLabel('Purpose').fill('service');
  });

  await check('privacy: an officer without a ticket is refused the audit search, verbatim', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(page, sc.tokens[sc.officer], '', '');
    await page.goto(`${base}/ui/#privacy`);
    await page.getByRole('heading', { name: 'Privacy', level: 2 }).waitFor();
    await page.getByLabel('Principal').fill('ops');
    await page.getByRole('button', { name: 'Search' }).click();
    const t = await alertText(page);
    assert(t.includes(sc.privacy.no_ticket), `alert "${t}" lacks "${sc.privacy.no_ticket}"`);
  });

  await check('privacy: the audit log shows the viewer\'s refused and allowed reads', async () => {
    await page.getByLabel(/^Ticket/).fill('DPO-7');
    await page.getByLabel('Principal').fill('viewer');
    await page.getByRole('button', { name: 'Search' }).click();
    const tb = page.locator('#audit-table');
    await tb.waitFor();
    const rows = await tb.locator('tbody tr').evaluateAll(trs => trs.map(tr => [...tr.cells].map(c => c.textContent)));
    assert(rows.length >= 2, `entries: ${rows.length}`);
    assert(rows.every(r => r[1] === 'viewer'), 'an entry of another principal');
    assert(rows.some(r => r[6] === 'deny' && r[8].includes(sc.refusals.query_no_ticket)), 'the refusal without a ticket is not shown');
    assert(rows.some(r => r[6] === 'allow' && r[5] === 'T-1'), 'the read with ticket T-1 is not shown');
    await shot(page, 'privacy-audit');
  });

  await check('privacy: a bulk export approved by the second person', async () => {
    await page.getByRole('button', { name: 'Show pending requests' }).click();
    const req = page.locator('#pending-table tbody tr').filter({ hasText: sc.privacy.pending });
    await req.first().waitFor();
    const cells = await req.first().locator('td').allTextContents();
    assert(cells[1] === 'exporter' && cells[3] === 'service' && cells[6] === 'Soc',
      `the pending request as listed: ${cells}`);
    await page.getByRole('button', { name: `Approve export ${sc.privacy.pending}` }).click();
    await page.locator('#export-result').filter({ hasText: 'approved' }).waitFor({ timeout: 10000 });
    await page.locator('#pending-table tbody tr').filter({ hasText: sc.privacy.pending }).waitFor({ state: 'detached', timeout: 10000 });
    await page.getByLabel('Export id').fill(sc.privacy.pending);
    const r = await page.request.get(`${base}/api/v1/exports/${sc.privacy.pending}?purpose=service`,
      { headers: { Authorization: `Bearer ${sc.tokens.exporter}` } });
    assert(r.status() === 200, `the requester's download after approval: ${r.status()}`);
    await page.getByRole('button', { name: 'Approve export' }).click(); // again: refused
    const t = await alertText(page);
    assert(/^Refused or failed\. 4\d\d: /.test(t), t);
  });

  await check('privacy: a subject export downloaded, then the subject erased', async () => {
    await page.getByLabel('Device id', { exact: true }).fill(sc.track);
    const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export subject data' }).click()]);
    const fs = await import('node:fs');
    const tar = fs.readFileSync(await dl.path());
    assert(tar.length > 1024 && tar.subarray(257, 262).toString() === 'ustar', `not a tar (${tar.length} bytes)`);
    await page.getByRole('button', { name: 'Erase subject' }).click();
    assert((await alertText(page)).includes('confirm'), 'erased without the confirmation');
    await page.getByLabel('I confirm the erasure').check();
    await page.getByRole('button', { name: 'Erase subject' }).click();
    await page.locator('#subject-result').filter({ hasText: 'erased' }).waitFor({ timeout: 10000 });
    const r = await page.request.get(`${base}/api/v1/query?device=${sc.track}&signals=Soc&purpose=service`,
      { headers: { Authorization: `Bearer ${sc.tokens.ops}` } });
    assert(r.status() === 404 || r.status() === 410, `read after erasure: ${r.status()}`);
    await shot(page, 'privacy');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(page, sc.tokens.ops, 'service');
  });

  await check('campaigns: the list and a campaign\'s status, for purpose clips', async () => {
    const c = sc.catalog;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(page, sc.tokens.dee, 'clips');
    await page.getByRole('link', { name: 'Campaigns and datasets' }).click();
    await page.getByRole('heading', { name: 'Campaigns and datasets', level: 2 }).waitFor();
    await page.getByRole('button', { name: 'List campaigns' }).click();
    const row = page.locator('#campaigns-table tbody tr').filter({ hasText: c.id });
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    assert(cells[1] === 'hard-braking' && cells[2] === c.status.state, `row ${cells}`);
    assert(cells[4] === String(c.status.targeted), `targeted ${cells[4]} vs ${c.status.targeted}`);
    await page.getByRole('button', { name: `Status of ${c.id}` }).click();
    await page.locator('#campaign-figures').waitFor();
    const t = await page.locator('#campaign-figures dd[data-key="targeted"]').textContent();
    assert(t === String(c.status.targeted), `targeted in the status: ${t}`);
    assert((await page.locator('#campaign-spec').textContent()).includes('VehicleSpeed > 200'), 'the spec');
    await shot(page, 'campaigns');
  });

  await check('datasets: refused for a role without model_training, verbatim; listed for one', async () => {
    await page.getByLabel('Purpose').fill('model_training');
    await page.getByRole('button', { name: 'List datasets' }).click();
    const t = await alertText(page);
    assert(t.includes(sc.catalog.refusal_datasets), `alert "${t}" lacks "${sc.catalog.refusal_datasets}"`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(page, sc.tokens.trainer, 'model_training');
    await page.goto(`${base}/ui/#catalog`);
    await page.getByRole('button', { name: 'List datasets' }).click();
    const cap = page.locator('#datasets-table caption');
    await cap.waitFor();
    assert((await cap.textContent()) === '0 datasets, 0 versions', await cap.textContent());
    await shot(page, 'datasets');
  });

  await check('keyboard: the pages are reached with Tab and Enter, focus visible', async () => {
    await page.goto(`${base}/ui/#fleet`);
    await page.getByRole('heading', { name: 'Fleet', level: 2 }).waitFor();
    await page.locator('body').focus();
    let found = false;
    for (let i = 0; i < 12 && !found; i++) {
      await page.keyboard.press('Tab');
      found = await page.evaluate(() => document.activeElement?.textContent === 'Energy');
    }
    assert(found, 'Tab never reached the Energy link');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert(outline !== 'none', 'no visible focus');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Energy', level: 2 }).waitFor();
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select')]
      .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length)).map(e => e.outerHTML));
    assert(unlabelled.length === 0, `unlabelled controls: ${unlabelled}`);
  });


  await check('sign-out clears the token', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Token').waitFor();
    const n = await page.evaluate(() => sessionStorage.getItem('fleetvault.token'));
    assert(n === null, 'token still stored');
  });
}
