'use strict';
// RFC 8898 §2.2 / §2.1.4, TS 24.229 trusted node authentication: a REGISTER with a valid Bearer
// token reaches Kamailio without the token, with imsgw's
// `Authorization: Digest ... integrity-protected="auth-done"` for the token's IMPI (tna mode),
// and with an expiry no longer than the token's remaining life. Both credential syntaxes
// (RFC 6750 §2.1 `Bearer <token>`, TS 24.371 `Bearer access_token="<token>"`) are accepted.
// Refresh: a new token extends the binding; an expired one is refused and the binding runs out.
// Kamailio runs with -A LOG_AUTH: one IMSAUTH line per request shows what it received.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab, uniqueUser, waitFor } = require('../lib/lab');
const { signJwt, jwtClaims } = require('../lib/imsgw');
const A = require('../lib/auth');

const L = useLab({ name: 'bearer-tna', block: 10, transport: 'udp', kamailio: { defines: ['FR_TIMER=3000', 'LOG_AUTH'] } });

const tna = (impi) => `Digest username="${impi}", realm="ims.example", uri="sip:ims.example", nonce="", response="", integrity-protected="auth-done"`;

/** JsSIP's REGISTER frames and their Call-ID. */
function registerCallId(ua) {
  const reg = ua.socket.frames.filter((f) => f.dir === 'out' && f.text.startsWith('REGISTER ')).pop();
  return /^Call-ID: (.+)$/m.exec(reg.text)[1].trim();
}

test('JsSIP with a 120 s token asks for 3600 s -> 200; Kamailio binds for <= 120 s, saw tna and no Bearer', L.track(async () => {
  const user = uniqueUser('tna');
  const token = await L.mint(user, { ttl: 120 });
  const exp = jwtClaims(token).exp;
  const ua = await L.ua('tna', { user, token, registerExpires: 3600 });
  assert.equal(ua.registerResponse.status_code, 200);
  const sent = ua.socket.frames.find((f) => f.dir === 'out' && f.text.startsWith('REGISTER ')).text;
  assert.match(sent, new RegExp(`^Authorization: Bearer ${token}\r?$`, 'm'), 'JsSIP sent the token (authorization_jwt)');
  assert.match(sent, /expires=3600|^Expires: 3600/m, 'JsSIP asked for 3600 s');

  const remaining = exp - A.now();
  const bindings = await L.kam.bindings(user);
  assert.equal(bindings.length, 1, `one binding for ${user}:\n${await L.kam.ulDumpText()}`);
  const e = Number(bindings[0].Expires);
  assert.ok(Number.isInteger(e) && e > 0 && e <= remaining + 1, `binding Expires ${bindings[0].Expires} must be <= the token's remaining ${remaining} s`);
  assert.ok(e >= remaining - 10, `binding Expires ${e} is about the token's remaining ${remaining} s`);

  const lines = await A.waitKamAuth(L, registerCallId(ua));
  assert.equal(lines.length, 1, `one REGISTER at Kamailio:\n${lines.join('\n')}`);
  const l = lines[0];
  assert.equal(A.field(l, 'method'), 'REGISTER');
  assert.equal(A.field(l, 'n_auth'), '1', `exactly one Authorization header upstream: ${l}`);
  assert.equal(A.field(l, 'auth'), tna(`${user}@ims.example`), `tna Authorization: ${l}`);
  assert.doesNotMatch(l, /Bearer/i, `the token must not reach Kamailio in tna mode: ${l}`);
  assert.equal(A.field(l, 'proxy_auth'), '<null>');
  const upExpires = Number(A.field(l, 'expires'));
  assert.ok(upExpires <= remaining + 1 && upExpires >= remaining - 10, `Expires forwarded ${A.field(l, 'expires')}, token remaining ${remaining}`);
  assert.doesNotMatch(A.field(l, 'contact'), /expires=3600/, `Contact expires capped too: ${l}`);
  // the 200 tells JsSIP the granted (capped) expiry
  const granted = /expires=(\d+)/.exec(ua.registerResponse.getHeader('Contact'));
  assert.ok(granted && Number(granted[1]) <= remaining + 1, `200 Contact: ${ua.registerResponse.getHeader('Contact')}`);
  // nothing at all with "Bearer" reached Kamailio in this file so far
  assert.doesNotMatch(L.kam.log(), /Bearer/i, 'Kamailio never received "Bearer" in tna mode');
}));

test('a REGISTER with neither Expires nor Contact expires gets Expires: <token remaining>', L.track(async () => {
  const c = await L.raw();
  const user = uniqueUser('noexp');
  const token = await L.mint(user, { ttl: 90 });
  const { res, callId } = await A.register(c, user, { auth: `Bearer ${token}` });
  assert.equal(res.status, 200, res.start);
  const remaining = jwtClaims(token).exp - A.now();
  const [l] = await A.waitKamAuth(L, callId);
  const up = Number(A.field(l, 'expires'));
  assert.ok(up > 0 && up <= remaining + 1 && up >= remaining - 10, `imsgw added Expires ${A.field(l, 'expires')} (token remaining ${remaining}): ${l}`);
  const b = await A.bindingExpires(L, user);
  assert.ok(b !== null && b <= remaining + 1, `binding Expires ${b}, remaining ${remaining}`);
  await c.close();
}));

for (const [label, fmt] of [
  ['RFC 6750 §2.1 "Bearer <token>"', (t) => `Bearer ${t}`],
  ['TS 24.371 Bearer access_token="<token>"', (t) => `Bearer access_token="${t}"`],
]) {
  test(`credentials as ${label} -> 200 and a binding`, L.track(async () => {
    const c = await L.raw();
    const user = uniqueUser('syntax');
    const token = await L.mint(user);
    const { res, callId } = await A.register(c, user, { auth: fmt(token), expires: 300 });
    assert.equal(res.status, 200, `${res.start}\n${res.get('Warning')}`);
    const [l] = await A.waitKamAuth(L, callId);
    assert.equal(A.field(l, 'auth'), tna(`${user}@ims.example`));
    assert.doesNotMatch(l, /Bearer|access_token/i);
    assert.equal((await L.kam.bindings(user)).length, 1);
    await c.close();
  }));
}

test('refresh: a new token extends the binding; an expired token is refused and the binding runs out', L.track(async () => {
  const c = await L.raw();
  const user = uniqueUser('refresh');
  // 1: a 12 s token (Kamailio's min_expires is 10)
  const t1 = await L.mint(user, { ttl: 12 });
  const r1 = await A.register(c, user, { auth: `Bearer ${t1}`, expires: 3600, cseq: 1 });
  assert.equal(r1.res.status, 200, r1.res.start);
  const e1 = await A.bindingExpires(L, user);
  assert.ok(e1 !== null && e1 <= 12, `first binding Expires ${e1} <= 12`);

  // 2: a fresh 20 s token on the same flow and Call-ID extends it
  const t2 = await L.mint(user, { ttl: 20 });
  const r2 = await A.register(c, user, { auth: `Bearer ${t2}`, expires: 3600, cseq: 2, callId: r1.callId });
  assert.equal(r2.res.status, 200, r2.res.start);
  const e2 = await A.bindingExpires(L, user);
  assert.ok(e2 !== null && e2 > 12 && e2 <= 20, `refreshed binding Expires ${e2} is in (12, 20]`);
  assert.equal((await L.kam.bindings(user)).length, 1, 'the refresh replaced the binding');

  // 3: a properly signed token that expired 120 s ago (beyond the 60 s leeway)
  const { kid, key } = await L.gw.signingKey();
  const n = A.now();
  const expired = signJwt({ alg: 'ES256', typ: 'at+jwt', kid }, L.gw.claims(`sip:${user}@ims.example`, { iat: n - 400, nbf: n - 400, exp: n - 120 }), key);
  const mark = L.kam.log().length;
  const r3 = await A.register(c, user, { auth: `Bearer ${expired}`, expires: 3600, cseq: 3, callId: r1.callId });
  A.assertRefusal(L.gw, r3.res, { code: 401, error: 'invalid_token', warning: /expired/i, what: 'expired token refresh' });
  await new Promise((r) => setTimeout(r, 150));
  assert.doesNotMatch(L.kam.log().slice(mark), new RegExp(r1.callId), 'the refused refresh never reached Kamailio');
  const e3 = await A.bindingExpires(L, user);
  assert.ok(e3 !== null && e3 <= e2, `binding not extended by the refused refresh: ${e3} (was ${e2})`);

  // 4: the binding runs out at the second token's expiry
  await waitFor(async () => (await A.bindingExpires(L, user)) === null, (e3 + 5) * 1000, `the binding of ${user} to expire`);
  const left = (await L.kam.bindings(user)).map((b) => b.Expires);
  assert.ok(left.every((x) => !/^\d+$/.test(x)), `no live binding left: ${left}`);
  await c.close();
}));

test('a refresh with a token expired 30 s ago (inside the 60 s leeway) must not turn into a de-registration', L.track(async () => {
  // The token is accepted (leeway), its remaining life is <= 0. Whatever imsgw decides --
  // refuse it, or register for some short time -- it must not rewrite the client's
  // "Expires: 300" into "Expires: 0" and answer 200 while Kamailio removes the binding.
  const c = await L.raw();
  const user = uniqueUser('leeway');
  const r1 = await A.register(c, user, { auth: `Bearer ${await L.mint(user, { ttl: 300 })}`, expires: 300, cseq: 1 });
  assert.equal(r1.res.status, 200, r1.res.start);
  assert.equal((await L.kam.bindings(user)).length, 1);
  const { kid, key } = await L.gw.signingKey();
  const n = A.now();
  const late = signJwt({ alg: 'ES256', typ: 'at+jwt', kid }, L.gw.claims(`sip:${user}@ims.example`, { iat: n - 300, nbf: n - 300, exp: n - 30 }), key);
  const r2 = await A.register(c, user, { auth: `Bearer ${late}`, expires: 300, cseq: 2, callId: r1.callId });
  await new Promise((r) => setTimeout(r, 200));
  const up = A.kamAuthLines(L.kam, r1.callId).slice(1);
  const after = await A.bindingExpires(L, user);
  const evidence = `\nanswer: ${r2.res.start} Contact=${JSON.stringify(r2.res.get('Contact'))} Warning=${JSON.stringify(r2.res.get('Warning'))}` +
    `\nKamailio received:\n${up.join('\n') || '(nothing)'}\nbinding Expires after: ${after}`;
  for (const l of up) assert.notEqual(A.field(l, 'expires'), '0', `imsgw forwarded the refresh as Expires: 0 (a de-registration the client did not ask for)${evidence}`);
  if (r2.res.status >= 200 && r2.res.status < 300) {
    assert.ok(after !== null, `200 OK to a REGISTER for 300 s, yet Kamailio holds no binding${evidence}`);
  } else {
    A.assertRefusal(L.gw, r2.res, { code: 401, error: 'invalid_token', warning: /expired/i, what: 'leeway-expired refresh' });
    assert.ok(after !== null, `the refused refresh removed the old binding${evidence}`);
  }
  await c.close();
}));
