'use strict';
// RFC 8898 §2.1.4: requests other than REGISTER from a WebSocket ride on that connection's
// registration (a 2xx to a REGISTER with a valid token): its IMPU must be the request's From.
// Otherwise 401 with the challenge (no registration) or 403 (another identity); a request may
// also carry its own valid Bearer token for its From. A client's own P-Asserted-Identity is
// never forwarded; in the default tna mode imsgw's trusted-node Authorization goes on the
// MESSAGE too; with sip.identity_assertion = ["pai"] imsgw asserts the IMPU itself
// (TS 24.229 §5.2.6.3.3), seen here by sipp as the UAS. RFC 8898 §2.3: with
// sip.challenge = "407" the challenge is 407 + Proxy-Authenticate, and Proxy-Authorization
// carries the token.
const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab, uniqueUser } = require('../lib/lab');
const sipp = require('../lib/sipp');
const A = require('../lib/auth');

const KAM = { defines: ['FR_TIMER=3000', 'LOG_AUTH'] };
const aor = (u) => `sip:${u}@ims.example`;

describe('tna (default): MESSAGE needs the flow\'s registration', () => {
  const L = useLab({ name: 'ride-tna', block: 14, transport: 'udp', kamailio: KAM });
  let bob; // a JsSIP user that receives
  let a; // a raw client registered as alice
  let alice;

  test('setup: bob (JsSIP) and alice (raw, Bearer REGISTER) are registered', L.track(async () => {
    bob = await L.ua('bob');
    alice = uniqueUser('alice');
    a = await L.raw();
    const { res } = await A.register(a, alice, { auth: `Bearer ${await L.mint(alice)}`, expires: 300 });
    assert.equal(res.status, 200, res.start);
  }));

  test('MESSAGE without a token from the registered flow, From = its IMPU -> passes (200 from bob); client PAI removed', L.track(async () => {
    const n = bob.messages.length;
    const { res, callId } = await A.message(a, alice, bob.aor, { body: 'hi bob', extra: [`P-Asserted-Identity: <sip:admin@ims.example>`] });
    assert.equal(res.status, 200, res.start);
    await bob.until(() => bob.messages[n], 3000, 'the MESSAGE');
    assert.equal(bob.messages[n].body, 'hi bob');
    assert.equal(bob.messages[n].from, aor(alice));
    assert.deepEqual(bob.messages[n].request.getHeaders('P-Asserted-Identity'), [], 'no PAI reached bob');
    const [l] = await A.waitKamAuth(L, callId);
    assert.equal(A.field(l, 'method'), 'MESSAGE');
    assert.equal(A.field(l, 'pai'), '<null>', `the client's PAI must not reach Kamailio: ${l}`);
    // Every request from a registered flow states who sent it (the P-CSCF sees all users come
    // from imsgw's one address): in tna mode that is imsgw's own trusted-node line, exactly one.
    assert.equal(A.field(l, 'n_auth'), '1', `one Authorization upstream: ${l}`);
    assert.equal(A.field(l, 'auth'), `Digest username="${alice}@ims.example", realm="ims.example", uri="sip:ims.example", nonce="", response="", integrity-protected="auth-done"`, `imsgw's tna assertion on MESSAGE: ${l}`);
  }));

  test('MESSAGE from an unregistered flow, no token -> 401 with the challenge, nothing upstream', L.track(async () => {
    const c = await L.raw();
    const u = uniqueUser('anon');
    const { res, callId } = await A.message(c, u, bob.aor);
    A.assertRefusal(L.gw, res, { code: 401, error: null, what: 'unregistered MESSAGE' });
    await A.assertNothingUpstream(L, callId);
    // nor does another flow's registration count: alice's IMPU on a connection that is not hers
    const r2 = await A.message(c, alice, bob.aor);
    A.assertRefusal(L.gw, r2.res, { code: 401, error: null, what: 'alice\'s From on another flow' });
    await A.assertNothingUpstream(L, r2.callId);
    await c.close();
  }));

  test('MESSAGE from the registered flow with a From of another user -> 403 with a Warning, nothing upstream', L.track(async () => {
    const { res, callId } = await A.message(a, bob.user, aor(uniqueUser('x')));
    A.assertRefusal(L.gw, res, { code: 403, error: false, warning: new RegExp(alice), what: 'From of another user' });
    await A.assertNothingUpstream(L, callId);
  }));

  test('MESSAGE from an unregistered flow with its own valid token for its From -> passes', L.track(async () => {
    const c = await L.raw();
    const u = uniqueUser('carol');
    const n = bob.messages.length;
    const { res } = await A.message(c, u, bob.aor, { auth: `Bearer ${await L.mint(u)}`, body: 'from carol' });
    assert.equal(res.status, 200, res.start);
    await bob.until(() => bob.messages[n], 3000, 'carol\'s MESSAGE');
    assert.equal(bob.messages[n].from, aor(u));
    // the same with a token for someone else -> 403
    const r2 = await A.message(c, u, bob.aor, { auth: `Bearer ${await L.mint(uniqueUser('dave'))}` });
    A.assertRefusal(L.gw, r2.res, { code: 403, error: false, warning: /token is for/, what: 'token of another user' });
    await A.assertNothingUpstream(L, r2.callId);
    // and with a bad token -> 401 invalid_token
    const r3 = await A.message(c, u, bob.aor, { auth: 'Bearer abc.def.ghi' });
    A.assertRefusal(L.gw, r3.res, { code: 401, error: 'invalid_token', warning: /refused/, what: 'bad token on MESSAGE' });
    await A.assertNothingUpstream(L, r3.callId);
    await c.close();
  }));
});

describe('pai: imsgw asserts the IMPU in P-Asserted-Identity', () => {
  const L = useLab({ name: 'ride-pai', block: 15, transport: 'udp', kamailio: KAM, imsgw: { extraSip: { identity_assertion: ['pai'] } } });

  test('REGISTER carries no tna Authorization upstream; MESSAGE to a sipp UAS arrives with P-Asserted-Identity: <impu>', L.track(async () => {
    // sipp (IMS side) registers itself at Kamailio, then waits as a UAS for one MESSAGE
    const target = uniqueUser('sippuas');
    const uasPort = L.p.sipp(15);
    const reg = await L.sipp({
      scenario: 'register-with-path.xml', service: target,
      keys: { path: `sip:uas@127.0.0.1:${uasPort};lr;ob`, contact: `sip:${target}@127.0.0.1:${uasPort};ob`, expires: 300, instance: '00000000-0000-4000-8000-0000000000a1' },
    });
    assert.equal(reg.code, 0, sipp.describe(reg));
    const uas = sipp.start({ dir: L.dir, name: 'uas-pai', scenario: 'uas.xml', port: uasPort, mediaPort: L.p.media(9), timeoutSecs: 10 });

    const c = await L.raw();
    const u = uniqueUser('paiuser');
    const r = await A.register(c, u, { auth: `Bearer ${await L.mint(u)}`, expires: 300 });
    assert.equal(r.res.status, 200, r.res.start);
    const [rl] = await A.waitKamAuth(L, r.callId);
    assert.equal(A.field(rl, 'auth'), '<null>', `pai mode: no Authorization on REGISTER upstream: ${rl}`);
    assert.doesNotMatch(rl, /Bearer/);

    const m = await A.message(c, u, aor(target), { body: 'to sipp', extra: ['P-Asserted-Identity: <sip:forged@ims.example>'] });
    const done = await uas.done;
    assert.equal(m.res.status, 200, `${m.res.start}\n${sipp.describe(done)}`);
    assert.equal(done.code, 0, sipp.describe(done));
    const got = sipp.traced(done.messages).find((x) => x.dir === 'received' && x.text.startsWith('MESSAGE '));
    assert.ok(got, `sipp received no MESSAGE: ${sipp.describe(done)}`);
    const pai = got.text.split('\n').filter((l) => /^P-Asserted-Identity:/i.test(l)).map((l) => l.trim());
    assert.deepEqual(pai, [`P-Asserted-Identity: <${aor(u)}>`], `exactly imsgw's PAI at the UAS:\n${got.text}`);
    assert.doesNotMatch(got.text, /forged@|Bearer/, got.text);
    await c.close();
  }));
});

describe('sip.challenge = "407" (RFC 8898 §2.3)', () => {
  const L = useLab({ name: 'ride-407', block: 16, transport: 'udp', kamailio: KAM, imsgw: { extraSip: { challenge: '407' } } });
  const PA = 'Proxy-Authenticate';

  test('REGISTER without credentials -> 407 with Proxy-Authenticate: Bearer ...; bad token -> 407 invalid_token', L.track(async () => {
    const c = await L.raw();
    const u = uniqueUser('p407');
    const r1 = await A.register(c, u, { expires: 300 });
    A.assertRefusal(L.gw, r1.res, { code: 407, header: PA, error: null, what: '407 no credentials' });
    await A.assertNothingUpstream(L, r1.callId, u);
    const r2 = await A.register(c, u, { expires: 300, auth: 'Bearer abc.def.ghi', authHeader: 'Proxy-Authorization' });
    A.assertRefusal(L.gw, r2.res, { code: 407, header: PA, error: 'invalid_token', warning: /refused/, what: '407 bad token' });
    await A.assertNothingUpstream(L, r2.callId, u);
    const r3 = await A.register(c, u, { expires: 300, auth: `Bearer ${await L.mint(u, { scope: 'profile' })}`, authHeader: 'Proxy-Authorization' });
    A.assertRefusal(L.gw, r3.res, { code: 403, header: PA, error: 'insufficient_scope', what: '407 mode, insufficient scope' });
    await A.assertNothingUpstream(L, r3.callId, u);
    await c.close();
  }));

  test('Proxy-Authorization: Bearer <token> registers; MESSAGE from an unregistered flow -> 407', L.track(async () => {
    const c = await L.raw();
    const u = uniqueUser('p407ok');
    const r = await A.register(c, u, { expires: 300, auth: `Bearer ${await L.mint(u)}`, authHeader: 'Proxy-Authorization' });
    assert.equal(r.res.status, 200, `${r.res.start} ${r.res.get('Warning')}`);
    const [l] = await A.waitKamAuth(L, r.callId);
    assert.equal(A.field(l, 'proxy_auth'), '<null>', `the Bearer Proxy-Authorization is not forwarded: ${l}`);
    assert.match(A.field(l, 'auth'), /integrity-protected="auth-done"/);
    const other = await L.raw();
    const m = await A.message(other, uniqueUser('p407anon'), aor(u));
    A.assertRefusal(L.gw, m.res, { code: 407, header: PA, error: null, what: '407 MESSAGE' });
    await A.assertNothingUpstream(L, m.callId);
    await c.close();
    await other.close();
  }));
});
