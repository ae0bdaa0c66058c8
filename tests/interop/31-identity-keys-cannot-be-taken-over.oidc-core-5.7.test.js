'use strict';
// OpenID Connect Core §5.7: `preferred_username` (like `email` and `name`) is neither unique nor
// stable, and `sub` is unique only at its issuer (§2). Identity mapping keyed on a name lets
// anyone who registers that name at a second provider become its owner's IMPU. Here two real
// OpenID providers, `demo` and `other`, both know an account named alice -- at `other` the
// attacker's, with even the same `sub` as the real alice at `demo` -- and imsgw runs with its
// default [identity] (no section at all):
//  (a) the two accounts get two different IMPUs and IMPIs;
//  (b) at the IMS side: alice's token registers her IMPU (Kamailio receives the REGISTER with
//      her IMPI asserted); the attacker's token for alice's IMPU gets 403 at the edge and
//      Kamailio receives nothing, holding only alice's binding; the attacker's token registers
//      the attacker's own IMPU, asserted with the attacker's IMPI, never alice's;
//  (c) a config whose template uses a name claim for a provider not marked as controlling
//      names, or that could map one name at two providers to one IMPU, is refused by
//      `imsgw check-config` and `imsgw serve` with a message naming the key.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { signinLab } = require('../lib/signin');
const { IMSGW_BIN, DOMAIN } = require('../lib/env');
const A = require('../lib/auth');

const BLOCK = 36;
const OTHER_PORT = 21000 + 100 * BLOCK + 7;

// At `other`, the attacker signed up as alice; this provider even hands out the same `sub`.
const attacker = {
  alice: {
    sub: 'sub-alice-0001',
    password: 'attacker-pw',
    claims: { preferred_username: 'alice', name: 'Alice A', email: 'alice@example.org', email_verified: true },
  },
};

const L = signinLab({
  name: 'identity-keys',
  block: BLOCK,
  identity: null, // imsgw's default mapping
  kamDefines: ['LOG_MSG'],
  idps: [{ name: 'other', display_name: 'Other IdP', port: OTHER_PORT, users: attacker }],
});

const userOf = (impu) => /^sip:([^@]+)@/.exec(impu)[1];
let real; // claims + token of alice at demo
let fake; // claims + token of "alice" at other

test('OIDC Core §5.7: the same preferred_username (and sub) at two providers maps to two different IMPUs and IMPIs', L.track(async () => {
  const a = await L.tokensFor('alice', { provider: 'demo' });
  const b = await L.tokensFor('alice', { provider: 'other' });
  assert.ok(L.idps.other.log().includes('POST /token -> 200'), 'the attacker signed in at the other provider');
  real = { claims: a.claims, token: a.tokens.access_token };
  fake = { claims: b.claims, token: b.tokens.access_token };
  for (const c of [a.claims, b.claims]) {
    assert.match(c.impu, new RegExp(`^sip:[^@:;?]+@${DOMAIN.replace(/\./g, '\\.')}$`), `a canonical IMPU: ${JSON.stringify(c)}`);
  }
  assert.notEqual(b.claims.impu, a.claims.impu, `the attacker at "other" got alice's IMPU ${a.claims.impu}`);
  assert.notEqual(b.claims.impi, a.claims.impi, `the attacker at "other" got alice's IMPI ${a.claims.impi}`);
}));

test('at the IMS side: a token from the other provider cannot REGISTER alice\'s IMPU (403, Kamailio receives nothing); each registers only its own, asserted with its own IMPI', L.track(async () => {
  assert.ok(real && fake, 'needs the sign-in test');
  const aliceUser = userOf(real.claims.impu);
  const fakeUser = userOf(fake.claims.impu);
  const c = await L.raw();

  // alice registers her IMPU: Kamailio receives it, her IMPI asserted by imsgw
  const mine = await A.register(c, aliceUser, { auth: `Bearer ${real.token}`, expires: 300 });
  assert.equal(mine.res.status, 200, `${mine.res.start}\n${L.gwLogTail(1500)}`);
  const got = await A.waitKamRequest(L, mine.callId, 'REGISTER');
  assert.match(got.get('To')[0], new RegExp(`<${real.claims.impu.replace(/[.+]/g, '\\$&')}>`), got.text);
  assert.deepEqual(got.get('Authorization').map((v) => /username="([^"]*)"/.exec(v)[1]), [real.claims.impi], got.text);

  // the attacker's token for alice's IMPU: refused at the edge, nothing upstream
  const stolen = await A.register(c, aliceUser, { auth: `Bearer ${fake.token}`, expires: 300 });
  A.assertRefusal(L.gw, stolen.res, { code: 403, error: false, what: 'the other provider\'s token for alice\'s IMPU' });
  await A.assertNothingUpstream(L, stolen.callId);
  const bindings = await L.kam.bindings(aliceUser);
  assert.equal(bindings.length, 1, `only alice's own binding:\n${await L.kam.ulDumpText()}`);

  // the attacker's token registers the attacker's IMPU only, asserted as the attacker
  const own = await A.register(c, fakeUser, { auth: `Bearer ${fake.token}`, expires: 300 });
  assert.equal(own.res.status, 200, `${own.res.start}\n${L.gwLogTail(1500)}`);
  const seen = await A.waitKamRequest(L, own.callId, 'REGISTER');
  assert.doesNotMatch(seen.text, new RegExp(`${aliceUser.replace(/[.+]/g, '\\$&')}@`), `alice's identity in the attacker's REGISTER:\n${seen.text}`);
  assert.deepEqual(seen.get('Authorization').map((v) => /username="([^"]*)"/.exec(v)[1]), [fake.claims.impi], seen.text);
}));

/** Runs imsgw with args; resolves { code, stdout, stderr }. */
function runImsgw(args, ms = 10000) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('IMSGW_')) delete env[k];
  return new Promise((resolve) => {
    execFile(IMSGW_BIN, args, { env, timeout: ms }, (e, stdout, stderr) => resolve({ code: e ? e.code : 0, stdout, stderr }));
  });
}

/** The lab's own config (two providers, no [identity]) with `identity` appended, in a new file. */
function configWith(name, identity) {
  const file = path.join(L.dir, `${name}.toml`);
  const text = fs.readFileSync(L.gw.configFile, 'utf8').replace(/^listen = "127\.0\.0\.1:\d+"$/mg, (l) => l.replace(/:\d+"$/, ':0"'));
  fs.writeFileSync(file, `${text}\n${identity}\n`);
  return file;
}

const NAMES = 'impu = "sip:{preferred_username}@{sip.domain}"\nimpi = "{preferred_username}@{sip.domain}"';

test('start-up refuses a name claim for a provider not marked as controlling names, naming the key (imsgw check-config)', L.track(async () => {
  const file = configWith('unmarked', `[identity]\n${NAMES}\n`);
  const r = await runImsgw(['check-config', '--config', file]);
  assert.equal(r.code, 2, `check-config exit status; stdout ${r.stdout} stderr ${r.stderr}`);
  assert.match(r.stderr, /identity\.impu/, r.stderr);
  assert.match(r.stderr, /preferred_username/, r.stderr);
  assert.match(r.stderr, /identity\.providers\.demo\.controls_usernames/, r.stderr);
  assert.match(r.stderr, /5\.7/, `cites OpenID Connect Core §5.7: ${r.stderr}`);
}));

test('start-up refuses one template that could give the same name at two marked providers one IMPU, naming the key; distinct per-provider templates start', L.track(async () => {
  const marked = '[identity.providers.demo]\ncontrols_usernames = true\n[identity.providers.other]\ncontrols_usernames = true\n';
  const file = configWith('collide', `[identity]\n${NAMES}\n${marked}`);
  const r = await runImsgw(['check-config', '--config', file]);
  assert.equal(r.code, 2, `check-config exit status; stdout ${r.stdout} stderr ${r.stderr}`);
  assert.match(r.stderr, /identity\.impu/, r.stderr);
  assert.match(r.stderr, /"demo"/, r.stderr);
  assert.match(r.stderr, /"other"/, r.stderr);
  assert.match(r.stderr, /same IMPU/i, r.stderr);

  // `imsgw serve` refuses it as well, before listening: exit 2, the same message
  const s = await runImsgw(['serve', '--config', file], 15000);
  assert.equal(s.code, 2, `serve exit status; stderr ${s.stderr}`);
  assert.match(s.stderr, /identity\.impu/, s.stderr);

  // control: each provider its own template with its own domain -> accepted
  const ok = configWith('distinct', [
    '[identity]',
    '[identity.providers.demo]', 'controls_usernames = true', NAMES,
    '[identity.providers.other]', 'controls_usernames = true',
    'impu = "sip:{preferred_username}@other.{sip.domain}"', 'impi = "{preferred_username}@other.{sip.domain}"',
  ].join('\n'));
  const okr = await runImsgw(['check-config', '--config', ok]);
  assert.equal(okr.code, 0, `check-config of distinct templates: ${okr.stderr}`);
}));
