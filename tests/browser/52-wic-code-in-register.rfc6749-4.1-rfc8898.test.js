'use strict';
// The WIC with `wwsf.sign_in = "code_in_register"` (issue 13 §1, the rich-UI flow with the code
// in the REGISTER) in headless Chromium against imsgw, Kamailio (LOG_MSG), sipp and the real
// OpenID provider (block 52):
// - sign-in through the provider's form; the page never asks the token endpoint (it never holds
//   a token), reads its IMPU from /auth/me and registers with its code; the edge exchanged it
//   (imsgw_sip_grants_total{outcome="code_exchanged"} 1, one held grant); Kamailio holds
//   alice's binding and never received the code or "Bearer";
// - a MESSAGE from the page (JsSIP sends the code again on it) rides the registration and
//   reaches a sipp UAS as alice's;
// - imsgw restarted under the page: the page gets a new code from its live WAF session (the
//   spent one is never sent again: no replay) and registers again;
// - sign-out: the binding goes, the connection's grant is revoked (no held grant left).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { wicLab } = require('../lib/wic');
const { uniqueUser, sleep } = require('../lib/env');
const sipp = require('../lib/sipp');

const W = wicLab({
  name: 'wic-code-in-register',
  block: 52,
  kamDefines: ['LOG_MSG'],
  wicClient: { code_in_register: true },
  wwsf: { sign_in: 'code_in_register' },
});
const L = W.L;
const ALICE = 'sip:alice@ims.example';

let page;
const asked = []; // every URL the page requested

async function metric(re) {
  const m = re.exec((await L.gw.metrics()).body);
  return m ? Number(m[1]) : 0;
}

test('1. sign-in -> Registered with the code in the REGISTER; the page never asked the token endpoint', L.track(async () => {
  page = await W.newPage({ label: 'alice' });
  page.on('request', (r) => asked.push(`${r.method()} ${r.url()}`));
  await W.el(page, 'signin-button').waitFor({ state: 'visible', timeout: 10000 });
  await W.signIn(page, 'alice');
  await W.waitRegistered(page, 20000, 'Registered after sign-in');
  assert.ok((await W.text(page, 'impu')).includes(ALICE));
  assert.equal(await page.evaluate(() => document.body.dataset.signIn), 'code_in_register');
  assert.deepEqual(asked.filter((u) => /\/oauth\/token/.test(u)), [], `no token request: ${asked.join('\n')}`);
  assert.ok(asked.some((u) => /^GET .*\/auth\/me$/.test(u)), `the page read its IMPU: ${asked.join('\n')}`);
  assert.equal(await metric(/^imsgw_sip_grants_total\{outcome="code_exchanged"\} (\d+)$/m), 1);
  assert.equal(await metric(/^imsgw_sip_held_grants (\d+)$/m), 1);
  const b = await W.bindings('alice');
  assert.equal(b.length, 1, JSON.stringify(b));
  assert.doesNotMatch(L.kam.log().split('\n').filter((l) => l.includes('IMSMSG dir=req')).map((l) => Buffer.from(l.split('b64=')[1] || '', 'base64').toString()).join('\n'),
    /bearer|code_verifier/i, 'Kamailio never received a Bearer credential or a verifier');
  W.assertClean(page);
}));

test('2. a MESSAGE from the page rides the registration (JsSIP sends the code on it too) and reaches sipp as alice\'s', L.track(async () => {
  assert.ok(page, 'needs 1');
  const user = uniqueUser('uas-msg');
  const port = L.p.sipp(18);
  const reg = await L.sipp({
    scenario: 'register-with-path.xml', service: user,
    keys: { path: `sip:uas@127.0.0.1:${port};lr;ob`, contact: `sip:${user}@127.0.0.1:${port};ob`, expires: 300, instance: '00000000-0000-4000-8000-000000000018' },
  });
  assert.equal(reg.code, 0, sipp.describe(reg));
  const run = sipp.start({ dir: L.dir, name: 'uas-msg', scenario: 'uas.xml', port, mediaPort: L.p.media(9), timeoutSecs: 15 });
  const aor = `sip:${user}@ims.example`;
  const body = `code-in-register ${Date.now().toString(36)}`;
  await W.el(page, 'msg-to').fill(aor);
  await W.el(page, 'msg-text').fill(body);
  await W.el(page, 'msg-send').click();
  const done = await run.done;
  assert.equal(done.code, 0, `sipp UAS: ${sipp.describe(done)}\n${W.describe(page)}`);
  const got = sipp.traced(done.messages).find((x) => x.dir === 'received' && x.text.startsWith('MESSAGE '));
  assert.ok(got && got.text.includes(body), sipp.describe(done));
  assert.match(got.text, /^From:.*sip:alice@ims\.example/mi, got.text);
  assert.doesNotMatch(got.text, /bearer|code=/i, got.text);
  await sleep(300);
  assert.equal(await W.text(page, 'error'), '', 'no error after a delivered MESSAGE');
}));

test('3. imsgw restarted under the page: the page gets a new code from its live sign-in (no replay of the spent one) and is Registered again', L.track(async () => {
  assert.ok(page, 'needs 1');
  const exit = await L.gw.stop();
  assert.equal(exit && exit.code, 0, `imsgw exit on SIGTERM: ${JSON.stringify(exit)}`);
  await W.waitText(page, 'reg-state', (t) => t !== 'Registered', 10000, 'the page notices');
  await sleep(2000);
  await L.gw.start();
  await W.waitRegistered(page, 40000, 'Registered again after the restart');
  assert.equal(await page.evaluate(() => document.body.dataset.signIn), 'code_in_register');
  assert.doesNotMatch(L.gw.log(), /authorization code replayed/, 'the spent code was never sent again');
  assert.equal(await metric(/^imsgw_sip_grants_total\{outcome="code_exchanged"\} (\d+)$/m), 1, 'one new code on the new gateway');
  assert.equal(await metric(/^imsgw_sip_grants_total\{outcome="code_refused"\} (\d+)$/m), 0);
  const b = await W.bindings('alice');
  assert.ok(b.length >= 1, JSON.stringify(b));
}));

test('4. sign-out: the binding goes and the connection\'s grant is revoked', L.track(async () => {
  assert.ok(page, 'needs 1');
  await W.el(page, 'signout-button').click();
  const end = Date.now() + 10000;
  let b;
  while ((b = await W.bindings('alice')).length > 0 && Date.now() < end) await sleep(200);
  assert.deepEqual(b, [], `Kamailio still holds alice's binding after sign-out\n${W.describe(page)}`);
  await W.el(page, 'signin-button').waitFor({ state: 'visible', timeout: 5000 });
  const until = Date.now() + 5000;
  while (await metric(/^imsgw_sip_held_grants (\d+)$/m) !== 0 && Date.now() < until) await sleep(100);
  assert.equal(await metric(/^imsgw_sip_held_grants (\d+)$/m), 0, 'no grant held once the connection is gone');
}));
