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

  // PAGES

  await check('sign-out clears the token', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Token').waitFor();
    const n = await page.evaluate(() => sessionStorage.getItem('fleetvault.token'));
    assert(n === null, 'token still stored');
  });
}
