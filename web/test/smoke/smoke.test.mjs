// Smoke test of the built WIC (dist/) in headless Chromium against fake-gateway.mjs:
// sign-in with PKCE, REGISTER with the Bearer token, refresh + re-REGISTER, messages both
// ways, incoming calls (reject, accept -> 488, caller cancels), reconnection after a gateway
// restart, refused token, sign-out; no console errors; no horizontal scroll at 360 px.
// Needs Debian's chromium (CHROMIUM overrides the path). Run: npm run smoke (after build).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';

import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startFakeGateway } from './fake-gateway.mjs';

const dist = new URL('../../dist/', import.meta.url).pathname;
const exe = process.env.CHROMIUM || '/usr/bin/chromium';
const skip = !existsSync(exe) ? `no Chromium at ${exe}` : !existsSync(join(dist, 'index.html')) ? 'dist/ is not built' : false;

let gw, browser, page;
const problems = [];
const until = async (f, what, ms = 15000) => {
  const end = Date.now() + ms;
  for (;;) {
    if (await f()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};
const text = (id) => page.locator(`[data-testid="${id}"]`).textContent();

before(async () => {
  if (skip) return;
  gw = await startFakeGateway({ dist, ttl: 8 });

  browser = await chromium.launch({
    executablePath: exe,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'],
  });
  page = await browser.newPage({ viewport: { width: 360, height: 740 } });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
});
after(async () => {
  await browser?.close();
  gw?.close();

});

test('sign in, register, refresh, messages, calls, reconnect, sign out', { skip }, async () => {
  await page.goto(gw.url);
  await page.getByTestId('signin-button').click();
  await until(async () => (await text('reg-state')) === 'Registered', 'Registered');
  assert.equal(await text('impu'), 'sip:alice@ims.example');
  assert.equal(new URL(page.url()).search, '', 'the code is gone from the address bar');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('wic.oauth.pending')), null);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  const first = gw.st.registers.at(-1);
  assert.match(first.contact, /\+sip\.instance="<urn:uuid:[0-9a-f-]{36}>"/);
  assert.match(first.contact, /reg-id=1/);
  assert.equal(first.expires, 600);

  // refresh at min(80%, -5 s) of 8 s = 3 s; the next REGISTER carries the new token
  await until(async () => (await page.evaluate(() => document.body.dataset.tokenRefreshes)) === '1', 'a refresh', 8000);
  await until(async () => gw.st.registers.at(-1).token !== first.token, 'a REGISTER with the new token');
  assert.equal(await text('reg-state'), 'Registered');
  assert.equal(await text('error'), '');

  // messages out: 200 and 404
  await page.getByTestId('msg-to').fill('bob');
  await page.getByTestId('msg-text').fill('hello bob');
  await page.getByTestId('msg-text').press('Enter');
  await until(async () => (await page.locator('#messages li.out').first().getAttribute('data-status')) === 'delivered', 'delivered');
  assert.match(gw.st.messages.at(-1), /^MESSAGE sip:bob@ims\.example SIP\/2\.0/);
  assert.match(gw.st.messages.at(-1), /hello bob$/);
  await page.getByTestId('msg-to').fill('nobody');
  await page.getByTestId('msg-text').fill('anyone?');
  await page.getByTestId('msg-send').click();
  await until(async () => (await page.locator('#messages li.out').nth(1).getAttribute('data-status')) === 'failed', 'failed');
  assert.match(await page.locator('#messages li.out').nth(1).textContent(), /404 no such person/);

  // message in
  gw.request('MESSAGE', { body: 'hi alice' });
  await until(async () => (await page.locator('#messages li[data-from="sip:bob@ims.example"]').count()) === 1, 'incoming message');
  assert.match(await page.locator('#messages li[data-from]').textContent(), /hi alice/);

  // calls: reject -> 486; accept -> 488 + words; cancel -> notice gone
  gw.request('INVITE');
  await page.getByTestId('incoming-call').waitFor({ state: 'visible' });
  assert.match(await text('incoming-call'), /Incoming call from .*sip:bob@ims\.example/);
  await page.getByTestId('call-reject').click();
  await until(() => gw.st.responses.some((r) => r.startsWith('SIP/2.0 486')), '486');
  assert.equal(await page.getByTestId('incoming-call').isHidden(), true);
  // accept an offer a browser cannot take (plain RTP/AVP, as from sipp): JsSIP answers 488
  gw.request('INVITE', { body: gw.st.plainRtpOffer, contentType: 'application/sdp' });
  await page.getByTestId('incoming-call').waitFor({ state: 'visible' });
  assert.equal(await text('call-state'), 'ringing');
  await page.getByTestId('call-accept').click();
  await until(() => gw.st.responses.some((r) => r.startsWith('SIP/2.0 488')), '488');
  await until(async () => /no common codec/.test(await text('error')), 'the failure in words');
  assert.equal(await text('call-state'), 'ended');
  assert.equal(await page.getByTestId('incoming-call').isHidden(), true);
  const inv = gw.request('INVITE');
  await page.getByTestId('incoming-call').waitFor({ state: 'visible' });
  gw.cancel(inv);
  await page.getByTestId('incoming-call').waitFor({ state: 'hidden' });

  // gateway restart: lost, reconnecting with a time, registered again by itself
  const before = gw.st.registers.length;
  gw.restart(1500);
  await until(async () => /Connection lost — reconnecting/.test(await text('error')), 'connection lost');
  assert.notEqual(await text('reg-state'), 'Registered');
  await until(async () => (await text('reg-state')) === 'Registered', 'registered again', 30000);
  assert.ok(gw.st.registers.length > before);
  assert.equal(gw.st.registers.at(-1).contact, first.contact, 'same Contact, +sip.instance and reg-id');
  assert.equal(await text('error'), '');

  // no horizontal scroll at 360 px
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), 'no horizontal scroll');
  if (process.env.WIC_SCREENSHOT) await page.screenshot({ path: process.env.WIC_SCREENSHOT, fullPage: true });

  // sign out: un-REGISTER, both tokens revoked, WAF session ended
  const access = gw.st.registers.at(-1).token;
  await page.getByTestId('signout-button').click();
  await page.getByTestId('signin-button').waitFor({ state: 'visible' });
  assert.equal(gw.st.registers.at(-1).expires, 0, 'un-REGISTER');
  assert.ok(gw.st.revoked.includes(access), 'access token revoked');
  assert.equal(gw.st.revoked.length, 2, 'refresh token revoked too');
  assert.equal(gw.st.logouts, 1);
  assert.equal(await text('reg-state'), 'Not registered');
  assert.equal(await text('impu'), '');

  // a refused token: 401 -> words and a way to sign in again
  await page.getByTestId('signin-button').click();
  await until(async () => (await text('reg-state')) === 'Registered', 'Registered again');
  gw.st.refuseAll = true;
  gw.restart(200);
  await until(async () => /sign-in has expired or was refused/.test(await text('error')), 'refused');
  assert.equal(await page.getByTestId('signin-button').isVisible(), true);
  assert.equal(await text('reg-state'), 'Not registered');
  gw.st.refuseAll = false;

  // Chromium itself logs each failed WebSocket handshake while the gateway is down; the page
  // cannot prevent that, and it is not normal use.
  const own = problems.filter((p) => !/WebSocket connection to '.*' failed/.test(p));
  assert.deepEqual(own, [], 'no console errors or warnings');
});
