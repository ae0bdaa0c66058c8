'use strict';
// One canonical IMS identity (IMPU). A SIP URI parser reads `sip:bob:x@ims.example` as user
// `bob` with password `x` (RFC 3261 §19.1.1), so an identity compared by user@host only would
// let a web account named `bob:x` (or `bob:`) register and message as bob. imsgw instead
// requires every IMPU to be canonical (no password, parameters, headers or port) and compares
// whole URIs (RFC 3261 §19.1.4):
//  (a) a web account whose preferred_username is `bob:x`, `bob:` or `%62ob` cannot be mapped:
//      the person gets the "cannot be used for calling" page saying why, and no code;
//  (b) a token properly signed with the gateway's own key whose `impu` is `sip:<u>:x@…` is
//      refused: REGISTER with To/From `sip:<u>:x@…` and with `sip:<u>@…` both get 401
//      error="invalid_token", and Kamailio receives nothing and holds no binding. The same
//      hand-signed token with a canonical `impu` registers (control);
//  (c) `imsgw token mint --impu sip:bob:x@ims.example` exits non-zero with the reason.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { signinLab, describe, assertErrorPage, stripTags } = require('../lib/signin');
const { signJwt } = require('../lib/imsgw');
const { uniqueUser, IMSGW_BIN, DOMAIN } = require('../lib/env');
const A = require('../lib/auth');

// Accounts at the test provider whose names are not a canonical SIP user part.
const idpUsers = {
  bobx: { sub: 'sub-bobx-2401', password: 'bobx-pw', claims: { preferred_username: 'bob:x', name: 'Bob X', email: 'bobx@example.org', email_verified: true } },
  bobcolon: { sub: 'sub-bobcolon-2402', password: 'bobcolon-pw', claims: { preferred_username: 'bob:', name: 'Bob Colon', email: 'bobc@example.org', email_verified: true } },
  bobesc: { sub: 'sub-bobesc-2403', password: 'bobesc-pw', claims: { preferred_username: '%62ob', name: 'Bob Escaped', email: 'bobe@example.org', email_verified: true } },
};

const L = signinLab({ name: 'canonical-impu', block: 24, idpUsers });

for (const [who, name, why] of [
  ['bobx', 'bob:x', /password/i],
  ['bobcolon', 'bob:', /password/i],
  ['bobesc', '%62ob', /canonical form/i],
]) {
  test(`RFC 3261 §19.1.4: a web account named ${JSON.stringify(name)} cannot be mapped to an IMPU -> a page saying why, no code`, L.track(async () => {
    const s = await L.signIn(L.browser(who), {}, { user: who });
    assert.ok(s.page.steps.includes('idp-login'), `went through the provider${describe(s.page)}`);
    assert.equal(s.code, null, `no code for ${who}: ${s.location}`);
    assertErrorPage(s.page, `account ${name}`, /cannot be used for calling/i);
    assert.match(stripTags(s.page.body), why, `the page says why${describe(s.page)}`);
    await L.healthy(who);
  }));
}

test('control: bob signs in and gets a code (the lab maps canonical names)', L.track(async () => {
  const s = await L.signIn(L.browser('bob'), {}, { user: 'bob' });
  assert.ok(s.code, `a code for bob${describe(s.page)}\n${L.gwLogTail(1500)}`);
}));

test('RFC 3261 §19.1.4 + RFC 6750 §3.1: a signed token for sip:<u>:x@… is invalid_token for To/From <u>:x and <u>; nothing reaches Kamailio', L.track(async () => {
  const { kid, key } = await L.gw.signingKey();
  const u = uniqueUser('bob');
  const bad = `sip:${u}:x@${DOMAIN}`;
  const token = signJwt({ alg: 'ES256', typ: 'at+jwt', kid }, L.gw.claims(bad, { impi: `${u}@${DOMAIN}` }), key);
  const c = await L.raw();
  for (const user of [`${u}:x`, u]) {
    const { res, callId } = await A.register(c, user, { auth: `Bearer ${token}`, expires: 300 });
    A.assertRefusal(L.gw, res, { code: 401, error: 'invalid_token', warning: /canonical IMPU/i, what: `To/From sip:${user}@${DOMAIN}` });
    await A.assertNothingUpstream(L, callId, u);
  }
  // Control: the same hand-signed token with a canonical impu registers, so only the impu was wrong.
  const v = uniqueUser('bob');
  const good = signJwt({ alg: 'ES256', typ: 'at+jwt', kid }, L.gw.claims(`sip:${v}@${DOMAIN}`), key);
  const { res } = await A.register(c, v, { auth: `Bearer ${good}`, expires: 300 });
  assert.equal(res.status, 200, `${res.start}\n${L.gwLogTail(1500)}`);
}));

test('imsgw token mint --impu sip:bob:x@ims.example exits non-zero and says why on stderr', L.track(async () => {
  for (const [impu, why] of [
    ['sip:bob:x@ims.example', /password/i],
    ['sip:bob@ims.example;user=phone', /parameters/i],
  ]) {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('IMSGW_')) delete env[k];
    const r = await new Promise((resolve) => {
      execFile(IMSGW_BIN, ['token', 'mint', '--config', L.gw.configFile, '--impu', impu], { env, timeout: 10000 }, (e, stdout, stderr) => resolve({ code: e ? e.code : 0, stdout, stderr }));
    });
    assert.notEqual(r.code, 0, `${impu}: exit status; stdout ${r.stdout}`);
    assert.equal(r.stdout, '', `${impu}: no token printed`);
    assert.match(r.stderr, why, `${impu}: stderr says why`);
  }
}));
