'use strict';
// Issue 9 §1, §2 and part of §5: nobody fills the WAF's memory, one person cannot lock others
// out, and the OAuth details an auditor checks. Anonymous clients come from many loopback
// source addresses (Linux routes all of 127/8 to lo) and through a "proxy" (127.0.0.9, listed
// in http.trusted_proxies) that says whom it forwards for. The person who signs in and
// registers is checked at the real IMS side (Kamailio's binding).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { signinLab, describe, pollDevice, stripTags } = require('../lib/signin');
const { forms, pkce } = require('../lib/browserless');
const { jwtClaims } = require('../lib/imsgw');

const BURST = 6;
const DEVICE_CODES = 40;
const PROXY = '127.0.0.9';
const L = signinLab({
  name: 'waf-bounded',
  block: 34,
  waf: {
    limits: { device_codes: DEVICE_CODES, anonymous_burst: BURST, anonymous_per_minute: 1 },
  },
  imsgw: { extraHttp: { trusted_proxies: [PROXY] } },
  extraClients: [{ id: 'partner', redirect_uris: [`http://127.0.0.1:${21000 + 100 * 34 + 7}/partner-cb`], grants: ['authorization_code'] }],
});
const partnerCb = () => `http://127.0.0.1:${21000 + 100 * 34 + 7}/partner-cb`;
/** People signed in before anything else (from 127.0.0.1, within its budget): user -> browser. */
const people = {};

/** One HTTP request from `localAddress`, no redirect following: { status, headers, body, json }. */
function raw(method, url, { from = '127.0.0.1', headers = {}, form, body: rawBody } = {}) {
  const body = form ? new URLSearchParams(form).toString() : rawBody;
  const h = { ...headers };
  if (form) h['content-type'] = 'application/x-www-form-urlencoded';
  if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, localAddress: from, headers: h, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** 302/303 to the provider (a pending sign-in was made), or the status. */
const redirected = (r) => (r.status === 302 || r.status === 303 ? 'redirect' : r.status);
const login = (from, headers) => raw('GET', `${L.gw.httpUrl}/auth/login?provider=demo&return=%2Fauth%2Fsigned-in`, { from, headers });
const deviceAuth = (from, headers) => raw('POST', `${L.gw.httpUrl}/oauth/device_authorization`, { from, headers, form: { client_id: 'phone', scope: 'sip' } });

/** Signs `user` in with a browser of their own and returns it (its session cookie). */
async function signedIn(user) {
  const b = L.browser(user);
  let p = await b.get(`${L.gw.httpUrl}/auth/signed-in`);
  p = await L.drive(b, p, { user, stopAt: () => false });
  assert.equal(p.status, 200, `${user} signs in${describe(p)}\n${L.gwLogTail()}`);
  assert.match(stripTags(p.body), new RegExp(`signed in as .*sip:${user}@`, 'i'), describe(p));
  return b;
}

/** Sends `code` on /device as the person of browser `b`; returns the answer page. */
async function enterCode(b, code, action = 'approve') {
  const p = await b.get(`${L.gw.httpUrl}/device`);
  assert.equal(p.status, 200, describe(p));
  const f = forms(p.body).find((x) => x.inputs.some((i) => i.name === 'user_code'));
  assert.ok(f, `a user_code form${describe(p)}`);
  return b.submit(p, { form: (x) => x.html === f.html, fields: { user_code: code }, button: action === 'approve' ? /allow|approve/i : /deny/i });
}

test('people sign in through the real provider before any flood: alice, bob, carol, dave', L.track(async () => {
  for (const user of ['alice', 'bob', 'carol', 'dave']) people[user] = await signedIn(user);
}));

test('§1 every field has a size: a 60 KB state -> 414, a 2 KB state -> error page (no redirect), 1 KB -> the sign-in page; oversize code, token and body -> invalid_request / 413', L.track(async () => {
  const a = L.authorizeUrl();
  const big = new URL(a.url);
  big.searchParams.set('state', 'x'.repeat(60 * 1024));
  const r1 = await raw('GET', big.toString(), { from: '127.0.0.40' });
  assert.equal(r1.status, 414, `60 KB state: ${r1.status} ${r1.body.slice(0, 200)}`);
  assert.equal(r1.json && r1.json.error, 'invalid_request', r1.body.slice(0, 200));
  big.searchParams.set('state', 'x'.repeat(2048));
  const r2 = await raw('GET', big.toString(), { from: '127.0.0.40' });
  assert.equal(r2.status, 400, `2 KB state: ${r2.status}`);
  assert.equal(r2.headers.location, undefined, 'never redirected with a state that long');
  assert.match(stripTags(r2.body), /too long/i, r2.body.slice(0, 300));
  big.searchParams.set('state', 'x'.repeat(1024));
  const r3 = await raw('GET', big.toString(), { from: '127.0.0.40' });
  assert.equal(r3.status, 200, `1 KB state is fine: ${r3.status}`);
  assert.match(stripTags(r3.body), /sign in/i);

  const code = await L.token({ grant_type: 'authorization_code', client_id: 'wic', code: 'c'.repeat(10000), code_verifier: 'v'.repeat(43) });
  assert.equal(code.status, 400, code.body);
  assert.equal(code.json.error, 'invalid_request', code.body);
  assert.match(code.json.error_description, /`code` is longer than/);
  const rev = await raw('POST', `${L.gw.httpUrl}/oauth/revoke`, { form: { client_id: 'wic', token: 't'.repeat(9000) } });
  assert.equal(rev.status, 400, rev.body);
  assert.equal(rev.json.error, 'invalid_request', rev.body);
  const body = await raw('POST', `${L.gw.httpUrl}/oauth/token`, { form: { grant_type: 'refresh_token', client_id: 'wic', refresh_token: 'r', pad: 'p'.repeat(40 * 1024) } });
  assert.equal(body.status, 413, `a 40 KB form body: ${body.status} ${body.body.slice(0, 200)}`);
  await L.healthy('oversize fields');
}));

test('§1/§2 public device codes: a burst per client address then 429 with Retry-After; a spoofed X-Forwarded-For from a stranger changes nothing; the trusted proxy\'s X-Forwarded-For names the client; sign-ins and signed-out pages keep nothing, so they need no budget', L.track(async () => {
  const codes = [];
  for (let i = 0; i < BURST; i += 1) codes.push((await deviceAuth('127.0.0.21')).status);
  assert.deepEqual(codes, Array(BURST).fill(200), `the first ${BURST} device codes from 127.0.0.21`);
  const over = await deviceAuth('127.0.0.21');
  assert.equal(over.status, 429, `device code ${BURST + 1} from one address: ${over.status} ${over.body}`);
  assert.equal(over.json.error, 'temporarily_unavailable', over.body);
  assert.ok(Number(over.headers['retry-after']) > 0, `Retry-After: ${over.headers['retry-after']}`);
  // The header from a stranger is ignored: still counted as 127.0.0.21.
  const spoof = await deviceAuth('127.0.0.21', { 'x-forwarded-for': '198.51.100.77' });
  assert.equal(spoof.status, 429, 'X-Forwarded-For from an untrusted peer does not reset the budget');
  // Another address has its own budget.
  assert.equal((await deviceAuth('127.0.0.22')).status, 200, 'another address is not affected');
  // Through the proxy, each forwarded-for client has its own budget.
  for (let i = 0; i < BURST; i += 1) assert.equal((await deviceAuth(PROXY, { 'x-forwarded-for': '203.0.113.1' })).status, 200);
  const p1 = await deviceAuth(PROXY, { 'x-forwarded-for': '203.0.113.1' });
  assert.equal(p1.status, 429, 'client 203.0.113.1 behind the proxy is over its budget');
  // A client-written entry left of the proxy's is not believed.
  const p1b = await deviceAuth(PROXY, { 'x-forwarded-for': '192.0.2.200, 203.0.113.1' });
  assert.equal(p1b.status, 429, 'a prepended X-Forwarded-For entry does not escape the budget');
  const p2 = await deviceAuth(PROXY, { 'x-forwarded-for': '203.0.113.2' });
  assert.equal(p2.status, 200, 'client 203.0.113.2 behind the same proxy is not affected');
  // Starting sign-ins keeps nothing in the WAF (the pending login is a sealed cookie), and
  // signed-out pages store nothing: no budget is spent, however many.
  for (let i = 0; i < 4 * BURST; i += 1) {
    const r = await login('127.0.0.23');
    assert.equal(redirected(r), 'redirect', `sign-in ${i} from one address: ${r.status}`);
    const cookies = [].concat(r.headers['set-cookie'] || []).join('\n');
    assert.match(cookies, /imsgw_login=[A-Za-z0-9_-]{40,};.*HttpOnly/, 'the pending login is a sealed HttpOnly cookie');
    const a = L.authorizeUrl();
    for (const u of [a.url, `${L.gw.httpUrl}/device?user_code=123456789`, `${L.gw.httpUrl}/auth/signed-in`]) {
      const x = await raw('GET', u, { from: '127.0.0.23' });
      assert.equal(x.status, 200, `signed-out ${u}: ${x.status}`);
    }
  }
  assert.equal((await deviceAuth('127.0.0.23')).status, 200, 'an address that only signed in and viewed pages still has its whole budget');
}));

test('§2 RFC 8628 §5.1: wrong user codes count per person, not per address: bob locked out after 5, carol from the same address approves her phone', L.track(async () => {
  const d = (await deviceAuth('127.0.2.1')).json;
  assert.ok(d && d.user_code, 'a device code');
  const { bob, carol } = people;
  const real = d.user_code.replace(/-/g, '');
  let last;
  for (let i = 0; i < 6; i += 1) {
    let wrong;
    // a different slot (first four digits), so only bob's counter is at stake
    do wrong = String(crypto.randomInt(1e9)).padStart(9, '0'); while (wrong.slice(0, 4) === real.slice(0, 4));
    last = await enterCode(bob, wrong);
  }
  assert.equal(last.status, 429, `bob after 6 wrong codes: ${last.status}${describe(last)}`);
  const done = await enterCode(carol, d.user_code);
  assert.equal(done.status, 200, `carol, same address as bob, approves: ${done.status}${describe(done)}\n${L.gwLogTail()}`);
  assert.match(stripTags(done.body), /phone connected/i);
  await new Promise((r) => setTimeout(r, 1100));
  const p = await pollDevice(L, d.device_code);
  assert.equal(p.status, 200, `carol's phone gets tokens: ${p.body}`);
  assert.equal(jwtClaims(p.json.access_token).impu, 'sip:carol@ims.example');
}));

test('§2 RFC 8628 §5.1: guesses at one pending code are counted on it; the fifth wrong one kills it (the phone hears expired_token, the right code no longer works)', L.track(async () => {
  const d = (await deviceAuth('127.0.2.2')).json;
  const real = d.user_code.replace(/-/g, '');
  const { dave } = people;
  // Four wrong guesses at its slot by dave (his own limit is five).
  for (let i = 0; i < 4; i += 1) {
    const wrong = real.slice(0, 4) + String((Number(real.slice(4)) + 1 + i) % 1e5).padStart(5, '0');
    const r = await enterCode(dave, wrong);
    assert.equal(r.status, 400, `wrong guess ${i + 1}${describe(r)}`);
  }
  // A fifth wrong guess by someone else still counts on the code.
  const other = people.alice;
  const wrong5 = real.slice(0, 4) + String((Number(real.slice(4)) + 7) % 1e5).padStart(5, '0');
  await enterCode(other, wrong5);
  const right = await enterCode(other, d.user_code);
  assert.equal(right.status, 400, `the right code after five wrong guesses at it: ${right.status}${describe(right)}`);
  await new Promise((r) => setTimeout(r, 1100));
  const p = await pollDevice(L, d.device_code);
  assert.equal(p.json && p.json.error, 'expired_token', `the phone: ${p.body}`);
}));

test('§5 consent: a client not marked first_party gets a consent page; deny -> access_denied back to the client; allow -> a code; remembered; a forged consent POST without the CSRF token -> 403', L.track(async () => {
  const b = people.bob;
  const p = pkce();
  const q = new URLSearchParams({
    response_type: 'code', client_id: 'partner', redirect_uri: partnerCb(), state: 'st-1',
    code_challenge: p.challenge, code_challenge_method: 'S256', scope: 'sip',
  });
  const url = `${L.gw.httpUrl}/oauth/authorize?${q}`;
  const stopAt = (u) => u.startsWith(partnerCb());
  let page = await b.get(url, { stopAt });
  assert.equal(page.status, 200, describe(page));
  assert.equal(page.stoppedAt, null, `no code before consent${describe(page)}`);
  assert.match(stripTags(page.body), /partner/);
  assert.match(stripTags(page.body), /allow this application/i);
  // A cross-site POST without the page's CSRF token.
  const forged = await b.request('POST', url, { form: { action: 'allow' } });
  assert.equal(forged.status, 403, `forged consent: ${forged.status}`);
  assert.equal(forged.headers.get('location'), null);
  const denied = await b.submit(page, { button: /deny/i, stopAt });
  const dl = new URL(denied.stoppedAt);
  assert.equal(dl.searchParams.get('error'), 'access_denied', denied.stoppedAt);
  assert.equal(dl.searchParams.get('state'), 'st-1');
  assert.equal(dl.searchParams.get('iss'), L.gw.issuer);
  assert.equal(dl.searchParams.get('code'), null);
  page = await b.get(url, { stopAt });
  const allowed = await b.submit(page, { button: /allow/i, stopAt });
  const al = new URL(allowed.stoppedAt);
  const code = al.searchParams.get('code');
  assert.ok(code, allowed.stoppedAt);
  const t = await L.token({ grant_type: 'authorization_code', client_id: 'partner', code, redirect_uri: partnerCb(), code_verifier: p.verifier });
  assert.equal(t.status, 200, t.body);
  assert.equal(jwtClaims(t.json.access_token).impu, 'sip:bob@ims.example');
  const again = await b.get(url, { stopAt });
  assert.ok(again.stoppedAt && new URL(again.stoppedAt).searchParams.get('code'), `consent is remembered${describe(again)}`);
  // The first-party web client never asks.
  const s = await L.signIn(b, {}, { user: 'bob' });
  assert.ok(s.code, describe(s.page));
}));

test('§1 device codes are capped (waf.limits.device_codes): past it temporarily_unavailable; a person already signed in still gets a code, tokens and a registration at Kamailio, and a new person can still sign in', L.track(async () => {
  const alice = people.alice;
  let full = null;
  for (let i = 0; i < DEVICE_CODES + 10 && !full; i += 1) {
    const from = `127.0.1.${10 + Math.floor(i / BURST)}`;
    const r = await deviceAuth(from);
    if (r.status === 503) full = r;
    else assert.equal(r.status, 200, `device code ${i} from ${from}: ${r.status} ${r.body}`);
  }
  assert.ok(full, `no cap within ${DEVICE_CODES + 10} device codes`);
  assert.equal(full.json.error, 'temporarily_unavailable', full.body);
  assert.ok(Number(full.headers['retry-after']) > 0);
  // Alice is signed in: a code, tokens, a registration.
  const s = await L.signIn(alice, {}, { user: 'alice' });
  assert.ok(s.code, `signed-in alice gets a code while the cap is reached${describe(s.page)}\n${L.gwLogTail()}`);
  const t = await L.token({ grant_type: 'authorization_code', client_id: 'wic', code: s.code, redirect_uri: L.cb, code_verifier: s.sent.verifier });
  assert.equal(t.status, 200, t.body);
  const ua = await L.ua('alice', { user: 'alice', token: t.json.access_token });
  assert.equal(ua.registerResponse.status_code, 200);
  const bind = await L.kam.bindings('alice');
  assert.equal(bind.length, 1, await L.kam.ulDumpText());
  // Someone signing in now, in a fresh browser, gets through too.
  const fresh = L.browser('bob-again');
  const s2 = await L.signIn(fresh, {}, { user: 'bob' });
  assert.ok(s2.code, `a new sign-in while device codes are full${describe(s2.page)}\n${L.gwLogTail()}`);
  await L.healthy('device-code cap');
}));

test('§5 RFC 9700 §2.1 / RFC 8252 §7.3: a client whose redirect URI is http to a non-loopback host (or localhost, or has a fragment) -> imsgw check-config refuses, naming the client', L.track(async () => {
  for (const bad of ['http://app.example/cb', 'http://localhost:7777/cb', 'https://app.example/cb#x']) {
    const dir = fs.mkdtempSync(path.join(L.dir, 'redirect-'));
    const cfg = path.join(dir, 'imsgw.toml');
    fs.writeFileSync(cfg, [
      '[sip]', 'domain = "ims.example"', 'upstream = "sip:127.0.0.1:5060"',
      '[waf]', `key_dir = ${JSON.stringify(path.join(dir, 'keys'))}`,
      '[[waf.clients]]', 'id = "app"', `redirect_uris = [${JSON.stringify(bad)}]`, 'grants = ["authorization_code"]', '',
    ].join('\n'));
    const out = await new Promise((resolve) => {
      execFile(process.env.IMSGW_BIN || path.join(__dirname, '../../target/debug/imsgw'), ['check-config', '--config', cfg], { timeout: 10000 }, (e, stdout, stderr) => resolve({ code: e ? e.code : 0, text: `${stdout}${stderr}` }));
    });
    assert.notEqual(out.code, 0, `${bad}: check-config must fail:\n${out.text}`);
    assert.match(out.text, /waf\.clients`: client `app`: redirect_uris/, `${bad}: ${out.text}`);
  }
}));

