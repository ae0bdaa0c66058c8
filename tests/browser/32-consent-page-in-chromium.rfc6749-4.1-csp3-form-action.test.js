'use strict';
// The consent page (issue 9 §5) in a real browser: a client not marked first_party asks alice
// to allow it; "Allow" must reach the client's redirect URI with a code, "Deny" with
// error=access_denied. Chromium applies the page's CSP form-action to the redirect after the
// form's POST, so the page must name the client's origin there (a scripted user agent does
// not check CSP; this test does). The client's redirect URI is a real listener here.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { wicLab } = require('../lib/wic');

const BLOCK = 38;
const CB_PORT = 21000 + 100 * BLOCK + 7;
const partnerCb = `http://127.0.0.1:${CB_PORT}/partner-cb`;
const W = wicLab({
  name: 'consent-chromium',
  block: BLOCK,
  extraClients: [{ id: 'partner', redirect_uris: [partnerCb], grants: ['authorization_code'] }],
});
const L = W.L;
const hits = [];
const partner = http.createServer((req, res) => { hits.push(new URL(req.url, partnerCb)); res.end('partner got it'); });
partner.listen(CB_PORT, '127.0.0.1');
after(() => partner.close());

/** Signs alice in at the provider from the consent flow's start; returns the page at imsgw's consent page. */
async function toConsent(page, state) {
  const a = L.authorizeUrl({ client_id: 'partner', redirect_uri: partnerCb, state });
  await page.goto(a.url);
  if (await page.$('a.button')) {
    await page.click('a.button');
    await page.fill('input[name=login]', 'alice');
    await page.fill('input[type=password]', L.idp.users.alice.password);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    // the provider's own consent
    for (let i = 0; i < 3 && !page.url().startsWith(L.gw.httpUrl); i += 1) {
      await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    }
  }
  assert.ok(page.url().startsWith(`${L.gw.httpUrl}/oauth/authorize`), `at imsgw's consent page: ${page.url()}`);
  assert.match(await page.textContent('h1'), /allow this application/i);
  return a;
}

test('Chromium: Deny sends access_denied to the client, Allow sends a code that exchanges for tokens; no CSP violation', L.track(run));

async function run() {
  const page = await W.newPage({ label: 'consent', open: false });
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  await toConsent(page, 'st-deny');
  await Promise.all([page.waitForURL((u) => u.toString().startsWith(partnerCb), { timeout: 5000 }).catch(() => {}), page.click('button[value=deny]')]);
  const denied = hits.find((u) => u.searchParams.get('state') === 'st-deny');
  assert.ok(denied, `the client heard the denial (page at ${page.url()}; CSP: ${violations.join(' | ')})`);
  assert.equal(denied.searchParams.get('error'), 'access_denied');
  assert.equal(denied.searchParams.get('code'), null);

  const a = await toConsent(page, 'st-allow');
  await Promise.all([page.waitForURL((u) => u.toString().startsWith(partnerCb), { timeout: 5000 }).catch(() => {}), page.click('button[value=allow]')]);
  const allowed = hits.find((u) => u.searchParams.get('state') === 'st-allow');
  assert.ok(allowed, `the client got the answer to Allow (page at ${page.url()}; CSP: ${violations.join(' | ')})`);
  const code = allowed.searchParams.get('code');
  assert.ok(code, allowed.toString());
  const t = await L.token({ grant_type: 'authorization_code', client_id: 'partner', code, redirect_uri: partnerCb, code_verifier: a.verifier });
  assert.equal(t.status, 200, t.body);
  assert.deepEqual(violations, [], 'no CSP violation on the way');
}
