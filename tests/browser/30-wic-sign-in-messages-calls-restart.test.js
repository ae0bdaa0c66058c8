'use strict';
// The WIC (web/dist, served by imsgw at /) in headless Chromium against imsgw, Kamailio, sipp and
// the real OpenID provider: sign-in through the provider's login form and registration; MESSAGE
// from the IMS (sipp) to the page and from the page to a sipp UAS; an incoming INVITE rejected
// (486) and accepted (the browser cannot take sipp's plain-RTP offer: a final error, no hang);
// imsgw restarted under the page (re-registered within 30 s); sign-out (binding gone); phone
// width and keyboard use; sign-out of a live gateway session (the WIC's POST carries its own
// Origin, which imsgw requires). Screenshots and console logs: tests/artifacts/wic-main/.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { wicLab } = require('../lib/wic');
const { uniqueUser, sleep } = require('../lib/env');
const sipp = require('../lib/sipp');

const W = wicLab({ name: 'wic-main', block: 30 });
const L = W.L;
const ALICE = 'sip:alice@ims.example';

let page; // alice, desktop
let phone; // bob, phone width (signed in after the restart, so his gateway session is live)

/** A sipp UAS registered at Kamailio as a fresh user (Path back to itself); waits for one request. */
async function sippUas(tag, slot) {
  const user = uniqueUser(`uas-${tag}`);
  const port = L.p.sipp(slot);
  const reg = await L.sipp({
    scenario: 'register-with-path.xml', service: user,
    keys: { path: `sip:uas@127.0.0.1:${port};lr;ob`, contact: `sip:${user}@127.0.0.1:${port};ob`, expires: 300, instance: `00000000-0000-4000-8000-0000000000${slot}` },
  });
  assert.equal(reg.code, 0, sipp.describe(reg));
  const run = sipp.start({ dir: L.dir, name: `uas-${tag}`, scenario: 'uas.xml', port, mediaPort: L.p.media(9), timeoutSecs: 15 });
  return { user, aor: `sip:${user}@ims.example`, done: run.done };
}

/** The incoming items of the page's message list: [{ from, text }]. */
const incoming = (p) => p.$$eval('[data-testid="messages"] [data-from], #messages [data-from]',
  (els) => els.map((e) => ({ from: e.getAttribute('data-from'), text: (e.textContent || '').trim() })));

/** sipp sends a MESSAGE to alice from the IMS side; resolves with sipp's result. */
const sippMessageToAlice = () => L.sipp({ scenario: 'uac-message.xml', service: 'alice', timeoutSecs: 10 });

/** Waits until an incoming item with `needle` in its text is on the page. */
async function waitIncoming(p, needle, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const items = await incoming(p);
    const hit = items.find((x) => x.text.includes(needle));
    if (hit) return hit;
    if (Date.now() > end) {
      throw new Error(`${what}: no incoming item with ${JSON.stringify(needle)} within ${ms} ms; items: ${JSON.stringify(items)}; ` +
        `screenshot: ${await W.shot(p, 'no-incoming-message')}\n${W.describe(p)}`);
    }
    await sleep(100);
  }
}

test('1. sign-in through the provider\'s login form -> Registered as sip:alice@ims.example; Kamailio holds the binding', L.track(async () => {
  const t0 = Date.now();
  page = await W.newPage({ label: 'alice' });
  await W.el(page, 'signin-button').waitFor({ state: 'visible', timeout: 10000 });
  await W.shot(page, 'signed-out');
  assert.notEqual(await W.text(page, 'reg-state'), 'Registered', 'not registered before sign-in');
  const steps = await W.signIn(page, 'alice');
  await W.waitRegistered(page, 20000, 'Registered after sign-in');
  const impu = await W.text(page, 'impu');
  assert.ok(impu === ALICE || impu.includes(ALICE), `#impu shows ${JSON.stringify(impu)}, expected ${ALICE}`);
  assert.equal(await W.text(page, 'error'), '', '#error empty when all is well');
  assert.ok(await W.visible(page, 'signout-button'), 'a sign-out button once signed in');
  assert.equal(new URL(page.url()).search, '', `the code and state are gone from the address bar: ${page.url()}`);
  await W.shot(page, 'registered');
  const b = await W.bindings('alice');
  assert.equal(b.length, 1, `Kamailio holds one binding for alice: ${JSON.stringify(b)}\n${W.describe(page)}`);
  assert.match(b[0].Path || '', /;ob/, `the binding's Path is imsgw's flow (;ob): ${JSON.stringify(b[0])}`);
  assert.ok(Number(b[0].Expires) > 0, JSON.stringify(b[0]));
  W.assertClean(page);
  console.log(`timing: sign-in (${steps.join(' -> ')}) to Registered in ${Date.now() - t0} ms; binding Expires ${b[0].Expires}`);
}));

test('2a. a MESSAGE from the IMS side (sipp) appears on the page with data-from', L.track(async () => {
  const since = Date.now();
  const r = await sippMessageToAlice();
  assert.equal(r.code, 0, `sipp's MESSAGE to alice got no 200/202: ${sipp.describe(r)}\n${W.describe(page)}`);
  const hit = await waitIncoming(page, 'hello from sipp', 5000, 'MESSAGE from sipp');
  assert.match(hit.from, /sip:caller@ims\.example/, `data-from of the incoming item: ${JSON.stringify(hit)}`);
  await W.shot(page, 'incoming-message');
  W.assertClean(page, { since });
}));

test('2b. a MESSAGE sent from the page reaches a sipp UAS registered at Kamailio', L.track(async () => {
  const since = Date.now();
  const uas = await sippUas('msg', 18);
  const body = `hello sipp from the WIC ${Date.now().toString(36)}`;
  await W.el(page, 'msg-to').fill(uas.aor);
  await W.el(page, 'msg-text').fill(body);
  await W.el(page, 'msg-send').click();
  const done = await uas.done;
  assert.equal(done.code, 0, `sipp UAS: ${sipp.describe(done)}\n${W.describe(page)}`);
  const got = sipp.traced(done.messages).find((x) => x.dir === 'received' && x.text.startsWith('MESSAGE '));
  assert.ok(got, `sipp received no MESSAGE: ${sipp.describe(done)}`);
  assert.ok(got.text.startsWith(`MESSAGE ${uas.aor}`) || /^MESSAGE sip:[^ ]+ SIP\/2.0/.test(got.text), got.text);
  assert.match(got.text, new RegExp(`^From:.*${ALICE.replace(/\./g, '\\.')}`, 'mi'), `From is alice:\n${got.text}`);
  assert.match(got.text, new RegExp(`^To:.*${uas.aor.replace(/\./g, '\\.')}`, 'mi'), `To is the UAS:\n${got.text}`);
  assert.ok(got.text.includes(body), `the body arrived:\n${got.text}`);
  await sleep(300); // the 200 back to the page
  assert.equal(await W.text(page, 'error'), '', 'no error after a delivered MESSAGE');
  await W.shot(page, 'message-sent');
  W.assertClean(page, { since });
}));

test('6. incoming INVITE: the notice appears; Reject -> sipp sees 486; Accept -> the call ends with an error response and a message, no hang', L.track(async () => {
  const since = Date.now();
  // reject
  const rej = L.sipp({ scenario: 'uac-invite-486.xml', service: 'alice', timeoutSecs: 15 });
  await W.el(page, 'incoming-call').waitFor({ state: 'visible', timeout: 5000 }).catch(async (e) => {
    throw new Error(`no incoming-call notice: ${e.message}\nscreenshot: ${await W.shot(page, 'no-incoming-call')}\n${W.describe(page)}`);
  });
  await W.shot(page, 'incoming-call');
  const tReject = Date.now();
  await W.el(page, 'call-reject').click();
  const r1 = await rej;
  assert.equal(r1.code, 0, `sipp expected 486 after Reject: ${sipp.describe(r1)}\n${W.describe(page)}`);
  console.log(`timing: Reject -> sipp done in ${Date.now() - tReject} ms`);
  await W.el(page, 'incoming-call').waitFor({ state: 'hidden', timeout: 3000 });
  assert.equal(await W.text(page, 'reg-state'), 'Registered');

  // accept: sipp offers plain RTP/AVP (no ICE, no DTLS); the browser cannot take it
  const acc = L.sipp({ scenario: 'uac-invite-fail.xml', service: 'alice', timeoutSecs: 15 });
  await W.el(page, 'incoming-call').waitFor({ state: 'visible', timeout: 5000 });
  const tAccept = Date.now();
  await W.el(page, 'call-accept').click();
  const r2 = await acc;
  const finals = sipp.responses(r2).filter((x) => x.status >= 200).map((x) => x.status);
  assert.equal(r2.code, 0, `after Accept sipp expected a final error response (not 2xx/408/487, no timeout): ${sipp.describe(r2)}\n${W.describe(page)}`);
  console.log(`timing: Accept -> final ${finals.join(',')} at sipp in ${Date.now() - tAccept} ms`);
  await W.el(page, 'incoming-call').waitFor({ state: 'hidden', timeout: 5000 }).catch(async (e) => {
    throw new Error(`the incoming-call notice stayed after the failed call: ${e.message}\nscreenshot: ${await W.shot(page, 'call-notice-stuck')}`);
  });
  // a message for the user: in #error or in the page's #notice (role=status)
  const end = Date.now() + 5000;
  let msg = { error: '', notice: '' };
  while (Date.now() < end) {
    msg = { error: await W.text(page, 'error'), notice: (await W.visible(page, 'notice')) ? await W.text(page, 'notice') : '' };
    if (msg.error || msg.notice) break;
    await sleep(100);
  }
  const shot = await W.shot(page, 'call-accept-failed');
  assert.ok(msg.error || msg.notice, `no message on the page after the accepted call failed: ${JSON.stringify(msg)}; screenshot ${shot}\n${W.describe(page)}`);
  console.log(`the page says after Accept: ${JSON.stringify(msg)}`);
  assert.equal(await W.text(page, 'reg-state'), 'Registered', 'still registered after the failed call');
  W.assertClean(page, { since });
}));

test('4. imsgw stopped and restarted (same config and keys): the page is Registered again within 30 s', L.track(async () => {
  const since = Date.now();
  const exit = await L.gw.stop();
  assert.equal(exit && exit.code, 0, `imsgw exit on SIGTERM: ${JSON.stringify(exit)}`);
  const tDown = Date.now();
  // the page notices the loss
  await W.waitText(page, 'reg-state', (t) => t !== 'Registered', 10000, 'reg-state leaving Registered when imsgw is gone');
  const noticedMs = Date.now() - tDown;
  await W.shot(page, 'gateway-down');
  await sleep(3000); // down for a while: the client backs off
  await L.gw.start();
  const tUp = Date.now();
  await W.waitRegistered(page, 30000, 'Registered again within 30 s of imsgw being back');
  const tReg = Date.now();
  console.log(`timing: imsgw down -> page noticed in ${noticedMs} ms; imsgw up -> Registered again in ${tReg - tUp} ms (${tReg - tDown} ms after the stop)`);
  await W.shot(page, 'registered-after-restart');
  const b = await W.bindings('alice');
  assert.equal(b.length, 1, `one binding for alice after the restart: ${JSON.stringify(b)}`);
  // the binding leads to the new flow: a MESSAGE from the IMS side reaches the page
  const n = (await incoming(page)).length;
  const r = await sippMessageToAlice();
  assert.equal(r.code, 0, `MESSAGE to alice after the restart: ${sipp.describe(r)}\n${W.describe(page)}`);
  const end = Date.now() + 5000;
  while ((await incoming(page)).length <= n && Date.now() < end) await sleep(100);
  assert.ok((await incoming(page)).length > n, `the MESSAGE after the restart is on the page\n${W.describe(page)}`);
  // connection failures while imsgw was down are logged by Chromium itself, not by the WIC
  W.assertClean(page, {
    since,
    allow: [/WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/sip' failed/, /net::ERR_CONNECTION_REFUSED/],
    allowFrom: tDown,
    allowTo: tReg,
  });
}));

test('5. sign-out: un-registers (binding gone), revokes, ends the gateway session; the page is signed out', L.track(async () => {
  const since = Date.now();
  const revokes = [];
  page.on('request', (r) => { if (r.method() === 'POST' && /\/oauth\/revoke$/.test(new URL(r.url()).pathname)) revokes.push(r.url()); });
  assert.equal((await W.bindings('alice')).length, 1, 'registered before');
  await W.el(page, 'signout-button').click();
  const end = Date.now() + 10000;
  let b;
  while ((b = await W.bindings('alice')).length > 0 && Date.now() < end) await sleep(200);
  assert.deepEqual(b, [], `Kamailio still holds alice's binding 10 s after sign-out\n${W.describe(page)}`);
  await W.el(page, 'signin-button').waitFor({ state: 'visible', timeout: 5000 });
  assert.notEqual(await W.text(page, 'reg-state'), 'Registered');
  assert.ok(!(await W.text(page, 'impu')).includes(ALICE) || !(await W.visible(page, 'impu')), 'no IMPU shown once signed out');
  await W.shot(page, 'signed-out-again');
  assert.ok(revokes.length >= 1, `the WIC revoked its token at /oauth/revoke\n${W.describe(page)}`);
  // the gateway session is over: signing in again shows imsgw's sign-in page, not an instant code
  await W.el(page, 'signin-button').click();
  await page.getByText('Continue with Demo IdP').first().waitFor({ state: 'visible', timeout: 10000 }).catch(async (e) => {
    throw new Error(`after sign-out, sign-in did not show imsgw's sign-in page (session still alive?) at ${page.url()}: ${e.message}\n` +
      `screenshot: ${await W.shot(page, 'signin-after-signout')}`);
  });
  await page.goto(`${W.gwBase}/`);
  await W.el(page, 'signin-button').waitFor({ state: 'visible', timeout: 5000 });
  W.assertClean(page, { since });
}));

test('7. phone width (360x740): no horizontal scroll; keyboard: Tab reaches sign-in, then the message fields, Enter sends', L.track(async () => {
  const p = await W.newPage({ label: 'bob-phone', viewport: { width: 360, height: 740 } });
  const noHScroll = async (state) => {
    const m = await p.evaluate(() => ({
      inner: window.innerWidth,
      doc: document.documentElement.scrollWidth,
      body: document.body ? document.body.scrollWidth : 0,
      wide: [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
        .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className && typeof e.className === 'string' ? `.${e.className}` : ''}`),
    }));
    assert.equal(m.inner, 360, `${state}: the layout viewport is the phone's width (meta viewport width=device-width): ${JSON.stringify(m)}`);
    assert.ok(m.doc <= m.inner && m.body <= m.inner, `${state}: horizontal scroll: ${JSON.stringify(m)}; screenshot ${await W.shot(p, `hscroll-${state}`)}`);
  };
  await W.el(p, 'signin-button').waitFor({ state: 'visible', timeout: 10000 });
  await W.shot(p, 'phone-signed-out');
  await noHScroll('signed-out');

  const focusBy = async (name, max = 25) => {
    for (let i = 0; i < max; i += 1) {
      await p.keyboard.press('Tab');
      const hit = await p.evaluate((s) => { const a = document.activeElement; return !!a && a.matches(s); }, `[data-testid="${name}"], #${name}`);
      if (hit) return i + 1;
    }
    throw new Error(`Tab never reached #${name} in ${max} presses; screenshot ${await W.shot(p, `no-focus-${name}`)}`);
  };
  const tabsToSignin = await focusBy('signin-button');
  await p.keyboard.press('Enter');
  await W.signIn(p, 'bob', { started: true });
  await W.waitRegistered(p, 20000, 'bob Registered (phone)');
  const impu = await W.text(p, 'impu');
  assert.ok(impu.includes('sip:bob@ims.example'), `#impu ${JSON.stringify(impu)}`);
  await W.shot(p, 'phone-registered');
  await noHScroll('registered');

  const uas = await sippUas('kbd', 19);
  const body = `typed on a phone ${Date.now().toString(36)}`;
  await p.evaluate(() => { if (document.activeElement) document.activeElement.blur(); });
  const tabsToTo = await focusBy('msg-to');
  await p.keyboard.type(uas.aor);
  await focusBy('msg-text', 5);
  await p.keyboard.type(body);
  await p.keyboard.press('Enter');
  const done = await uas.done;
  assert.equal(done.code, 0, `sipp UAS (message sent with Enter): ${sipp.describe(done)}\n${W.describe(p)}`);
  const got = sipp.traced(done.messages).find((x) => x.dir === 'received' && x.text.startsWith('MESSAGE '));
  assert.ok(got && got.text.includes(body), `sipp received the typed MESSAGE: ${sipp.describe(done)}`);
  assert.match(got.text, /^From:.*sip:bob@ims\.example/mi);
  await sleep(300);
  await W.shot(p, 'phone-message-sent');
  await noHScroll('after-message');
  console.log(`keyboard: ${tabsToSignin} Tab(s) to the sign-in button, ${tabsToTo} to msg-to`);
  W.assertClean(p);
  phone = p;
}));

test('8. sign-out ends a live gateway session (bob\'s, made after the restart): the WIC\'s POST /auth/logout with its own Origin -> 200; sign-in then shows imsgw\'s page', L.track(async () => {
  assert.ok(phone, 'needs test 7');
  const since = Date.now();
  const logouts = [];
  phone.on('response', async (r) => {
    if (r.request().method() === 'POST' && new URL(r.url()).pathname === '/auth/logout') {
      logouts.push({ status: r.status(), origin: (await r.request().allHeaders()).origin });
    }
  });
  await W.el(phone, 'signout-button').click();
  await W.el(phone, 'signin-button').waitFor({ state: 'visible', timeout: 10000 });
  const end = Date.now() + 5000;
  while (logouts.length === 0 && Date.now() < end) await sleep(50);
  assert.equal(logouts.length, 1, `the WIC posted to /auth/logout once: ${JSON.stringify(logouts)}`);
  assert.equal(logouts[0].status, 200, `POST /auth/logout from the WIC: ${JSON.stringify(logouts[0])}\n${W.describe(phone)}`);
  assert.equal(logouts[0].origin, W.gwBase, 'Chromium labels the WIC\'s POST with the gateway\'s origin');
  await W.el(phone, 'signin-button').click();
  await phone.getByText('Continue with Demo IdP').first().waitFor({ state: 'visible', timeout: 10000 }).catch(async (e) => {
    throw new Error(`after sign-out, sign-in did not show imsgw's sign-in page (session still alive?) at ${phone.url()}: ${e.message}\n` +
      `screenshot: ${await W.shot(phone, 'bob-signin-after-signout')}`);
  });
  W.assertClean(phone, { since });
}));

