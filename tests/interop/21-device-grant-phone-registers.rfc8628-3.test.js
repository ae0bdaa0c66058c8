'use strict';
// Flow 2 of DESIGN.md (a phone with a key pad): RFC 8628 device authorization grant. The phone
// (client "phone") asks /oauth/device_authorization for a user code, and polls /oauth/token
// while a signed-in person (the headless user agent, signed in at the real provider) approves
// or denies the code on imsgw's /device page; then it registers with the token (JsSIP) -> 200.
// Polling answers (§3.5): authorization_pending, slow_down, access_denied, expired_token.
// Brute force of user codes (§5.1) is rate limited. waf.device_poll_secs = 1 and
// waf.device_code_ttl_secs = 6 keep it fast.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { signinLab, describe, pollDevice, sleep, stripTags, DEVICE_GRANT } = require('../lib/signin');
const { forms } = require('../lib/browserless');
const { httpPostForm, jwtClaims } = require('../lib/imsgw');

const TTL = 6;
const L = signinLab({ name: 'device-grant', block: 21, waf: { device_code_ttl_secs: TTL, device_poll_secs: 1 } });

const deviceAuth = (form = { client_id: 'phone', scope: 'sip' }) => httpPostForm(`${L.gw.httpUrl}/oauth/device_authorization`, form);

async function newCode() {
  const r = await deviceAuth();
  assert.equal(r.status, 200, `device_authorization: ${r.body}\n${L.gwLogTail()}`);
  return r.json;
}

const decide = (browser, d, user, decision) => L.decideDevice(browser, d, user, decision);

test('RFC 8628 §3.2: device_authorization answers device_code, a 9-digit user_code, verification URIs, expires_in, interval', L.track(async () => {
  const d = await newCode();
  assert.ok(d.device_code && d.device_code.length >= 20, `device_code: ${JSON.stringify(d)}`);
  assert.match(d.user_code, /^\d{3}-\d{3}-\d{3}$/, `user_code: ${d.user_code}`);
  assert.equal(d.verification_uri, `${L.gw.httpUrl}/device`);
  assert.equal(d.verification_uri_complete, `${L.gw.httpUrl}/device?user_code=${d.user_code.replace(/-/g, '')}`);
  assert.equal(d.expires_in, TTL);
  assert.equal(d.interval, 1);
  // a client without the device grant -> unauthorized_client; an unknown client -> invalid_client
  const w = await deviceAuth({ client_id: 'svc', scope: 'sip' });
  assert.ok(w.status === 400 || w.status === 401, `svc: ${w.status} ${w.body}`);
  assert.ok(['unauthorized_client', 'invalid_client'].includes(w.json && w.json.error), `svc (no device grant): ${w.body}`);
  const u = await deviceAuth({ client_id: 'nobody', scope: 'sip' });
  assert.equal(u.status, 401, u.body);
  assert.equal(u.json && u.json.error, 'invalid_client', u.body);
}));

test('RFC 8628 §3.4/3.5 end to end: pending while unapproved, the person approves on /device, the phone gets tokens and REGISTERs -> 200', L.track(async () => {
  const d = await newCode();
  await sleep(1100);
  const p1 = await pollDevice(L, d.device_code);
  assert.equal(p1.status, 400, p1.body);
  assert.equal(p1.json && p1.json.error, 'authorization_pending', p1.body);
  const b = L.browser('bob');
  const done = await decide(b, d, 'bob', 'approve');
  assert.ok(done.status < 400, `approve: ${done.status}${describe(done)}\n${L.gwLogTail()}`);
  await sleep(1100);
  const p2 = await pollDevice(L, d.device_code);
  assert.equal(p2.status, 200, `poll after approval: ${p2.body}\n${L.gwLogTail()}`);
  const t = p2.json;
  assert.equal(t.token_type, 'Bearer');
  assert.ok(t.access_token && t.refresh_token && t.expires_in > 0, p2.body);
  const c = jwtClaims(t.access_token);
  assert.equal(c.impu, 'sip:bob@ims.example');
  assert.equal(c.impi, 'bob@ims.example');
  // the device code is spent
  await sleep(1100);
  const p3 = await pollDevice(L, d.device_code);
  assert.equal(p3.status, 400, p3.body);
  assert.ok(['invalid_grant', 'expired_token'].includes(p3.json && p3.json.error), `a used device code: ${p3.body}`);
  // the phone registers
  const ua = await L.ua('bob', { user: 'bob', token: t.access_token });
  assert.equal(ua.registerResponse.status_code, 200);
  const bind = await L.kam.bindings('bob');
  assert.equal(bind.length, 1, await L.kam.ulDumpText());
  // another client may not redeem the phone's device code
  const other = await L.token({ grant_type: DEVICE_GRANT, device_code: d.device_code, client_id: 'wic' });
  assert.equal(other.status, 400, other.body);
}));

test('RFC 8628 §3.5 slow_down: polling faster than the interval', L.track(async () => {
  const d = await newCode();
  await sleep(1100);
  const p1 = await pollDevice(L, d.device_code);
  assert.equal(p1.json && p1.json.error, 'authorization_pending', p1.body);
  const p2 = await pollDevice(L, d.device_code); // at once
  assert.equal(p2.status, 400, p2.body);
  assert.equal(p2.json && p2.json.error, 'slow_down', `an immediate second poll: ${p2.body}`);
}));

test('RFC 8628 §3.5 access_denied: the person denies the code on /device', L.track(async () => {
  const d = await newCode();
  const b = L.browser('carol');
  const done = await decide(b, d, 'carol', 'deny');
  assert.ok(done.status < 500, `deny: ${done.status}${describe(done)}`);
  await sleep(1100);
  const p = await pollDevice(L, d.device_code);
  assert.equal(p.status, 400, p.body);
  assert.equal(p.json && p.json.error, 'access_denied', `${p.body}\n${L.gwLogTail()}`);
}));

test('RFC 8628 §3.5 expired_token: a code not approved within expires_in', L.track(async () => {
  const d = await newCode();
  assert.equal(d.expires_in, TTL);
  await sleep(TTL * 1000 + 600);
  const p = await pollDevice(L, d.device_code);
  assert.equal(p.status, 400, p.body);
  assert.equal(p.json && p.json.error, 'expired_token', p.body);
  // and the person can no longer approve it
  const b = L.browser('dave');
  const r = await decide(b, d, 'dave', 'approve');
  assert.ok(r.status >= 400, `approving an expired code is refused: ${r.status}${describe(r)}`);
  await sleep(1100);
  const p2 = await pollDevice(L, d.device_code);
  assert.equal(p2.json && p2.json.error, 'expired_token', `still expired after an approval attempt: ${p2.body}`);
}));

test('RFC 8628 §5.1: too many wrong user codes -> rate limited (429 or a page saying so); the right code is then refused too', L.track(async () => {
  const d = await newCode();
  const b = L.browser('dave2');
  let p = await b.get(`${L.gw.httpUrl}/device`);
  p = await L.drive(b, p, { user: 'dave', stopAt: () => false });
  assert.equal(p.status, 200, describe(p));
  const entry = forms(p.body).find((f) => f.inputs.some((x) => x.name === 'user_code'));
  assert.ok(entry, `/device asks for a user_code${describe(p)}`);
  const attempts = [];
  let limited = null;
  for (let i = 0; i < 30 && !limited; i += 1) {
    let wrong;
    do wrong = String(Math.floor(Math.random() * 1e9)).padStart(9, '0'); while (wrong === d.user_code.replace(/-/g, ''));
    const r = await b.submit(p, { form: (f) => f.html === entry.html, fields: { user_code: `${wrong.slice(0, 3)}-${wrong.slice(3, 6)}-${wrong.slice(6)}` } });
    attempts.push(`${r.status} ${stripTags(r.body).slice(0, 80)}`);
    if (r.status === 429 || /too many|rate limit|try again later/i.test(stripTags(r.body))) limited = { i, r };
    else assert.ok(r.status >= 400 || /not valid|invalid|wrong/i.test(stripTags(r.body)), `a wrong code is refused: ${describe(r)}`);
  }
  assert.ok(limited, `no rate limit within 30 wrong codes:\n${attempts.join('\n')}\n${L.gwLogTail()}`);
  // the right code from the limited agent: not approved
  let r = await b.submit(p, { form: (f) => f.html === entry.html, fields: { user_code: d.user_code } });
  const approve = forms(r.body).find((f) => f.buttons.some((x) => /approve|allow/i.test(x.text)));
  if (approve) r = await b.submit(r, { form: (f) => f.html === approve.html, button: /approve|allow/i });
  await sleep(1100);
  const poll = await pollDevice(L, d.device_code);
  assert.equal(poll.json && poll.json.error, 'authorization_pending', `after ${limited.i + 1} wrong codes the right one must not be approved by the same agent: ${poll.body}`);
  await L.healthy('wrong user codes');
}));
