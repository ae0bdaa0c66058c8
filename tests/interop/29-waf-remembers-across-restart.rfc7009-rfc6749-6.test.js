'use strict';
// The WAF remembers (DESIGN.md, State): its state lives in the durable store under
// [waf] state_dir, so a restart of imsgw forgets nothing. A token revoked (RFC 7009) before the
// restart stays refused after it, at introspection (RFC 7662) and at the SIP edge (nothing
// reaches Kamailio); a signed-in browser keeps its session and a refresh token keeps rotating
// (RFC 6749 §6, RFC 9700 §4.14.2: the old one is then refused and its reuse revokes the
// family); a SIGKILL in the middle of refresh rotations leaves every family with at most one
// working refresh token, or revoked. A damaged state file stops the start (and fails
// check-config) with an error that names it, and is left as it was.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { signinLab, describe } = require('../lib/signin');
const { httpPostForm, jwtClaims, imsgwCmd } = require('../lib/imsgw');
const A = require('../lib/auth');
const { uniqueUser } = require('../lib/lab');

// Kamailio logs every message it receives (LOG_MSG, for A.kamMessages): to show what did not
// arrive.
const L = signinLab({ name: 'remembers', block: 39, kamailio: { defines: ['FR_TIMER=3000', 'LOG_AUTH', 'LOG_MSG'] } });

const refresh = (rt) => L.token({ grant_type: 'refresh_token', refresh_token: rt, client_id: 'wic' });
const revoke = (token) => httpPostForm(`${L.gw.httpUrl}/oauth/revoke`, { token, client_id: 'wic' });
const active = async (at) => (await L.introspect(at)).json.active === true;

/** SIGTERM, exit 0, and start again on the same config and state directory. */
async function restart() {
  const exit = await L.gw.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, `imsgw exits 0 on SIGTERM\n${L.gwLogTail()}`);
  await L.gw.start();
}

/** The REGISTERs Kamailio received for a Call-ID (after a short settle). */
async function kamRegisters(callId) {
  await new Promise((r) => { setTimeout(r, 200); });
  return A.kamMessages(L.kam, callId).filter((m) => m.dir === 'req' && m.method === 'REGISTER');
}

test('RFC 7009: a token revoked before a restart is still refused after it: introspection inactive, REGISTER 401 at the edge, no REGISTER reaches Kamailio', L.track(async () => {
  const [revUser, keptUser] = [uniqueUser('rev'), uniqueUser('kept')];
  // issued to the web client, which may revoke it (RFC 7009 §2.1)
  const revoked = await L.mint(revUser, { client_id: 'wic' });
  const kept = await L.mint(keptUser, { client_id: 'wic' });
  assert.equal((await revoke(revoked)).status, 200);
  assert.equal(await active(revoked), false, 'inactive before the restart');

  await restart();

  assert.deepEqual((await L.introspect(revoked)).json, { active: false }, 'still inactive after the restart');
  assert.equal(await active(kept), true, 'an unrevoked token is still active');
  const ws = await L.raw();
  const r = await A.register(ws, revUser, { auth: `Bearer ${revoked}`, expires: 60 });
  A.assertRefusal(L.gw, r.res, { code: 401, error: 'invalid_token', warning: /revoked/i, what: 'REGISTER with a token revoked before the restart' });
  assert.deepEqual(await kamRegisters(r.callId), [], 'Kamailio received no REGISTER with the revoked token');
  await A.assertNothingUpstream(L, r.callId, revUser);
  // the same path with the unrevoked token does reach Kamailio (so the check above can see one)
  const ok = await A.register(ws, keptUser, { auth: `Bearer ${kept}`, expires: 60 });
  assert.equal(ok.res.status, 200, ok.res.start);
  await A.waitKamRequest(L, ok.callId, 'REGISTER');
  await A.register(ws, keptUser, { auth: `Bearer ${kept}`, expires: 0, cseq: 2, callId: ok.callId });
  await ws.close();
}));

test('a signed-in browser keeps its session across a restart, and its refresh token rotates after it; the old one is then refused and its reuse revokes the family', L.track(async () => {
  const { tokens, browser } = await L.tokensFor('alice');

  await restart();

  // The session cookie still signs the browser in: /oauth/authorize answers with a code at
  // once, without imsgw's sign-in page and without a visit to the provider.
  const idpMark = L.idp.logMark();
  const s = await L.signIn(browser, {}, { user: 'alice' });
  assert.ok(s.code, `a code straight away after the restart${describe(s.page)}\n${L.gwLogTail()}`);
  assert.deepEqual(s.page.steps, [], `no sign-in page, no provider login${describe(s.page)}`);
  assert.doesNotMatch(L.idp.logSince(idpMark), /GET \/auth\?/, 'the provider was not asked again');
  const code = await L.token({ grant_type: 'authorization_code', code: s.code, redirect_uri: L.cb, client_id: 'wic', code_verifier: s.sent.verifier });
  assert.equal(code.status, 200, code.body);
  assert.equal(jwtClaims(code.json.access_token).impu, 'sip:alice@ims.example');

  // The refresh token issued before the restart rotates after it.
  const r1 = await refresh(tokens.refresh_token);
  assert.equal(r1.status, 200, `refresh with a token from before the restart: ${r1.body}\n${L.gwLogTail()}`);
  assert.notEqual(r1.json.refresh_token, tokens.refresh_token);
  assert.equal(await active(r1.json.access_token), true);
  // Reusing the rotated one: refused, and the whole family goes (RFC 9700 §4.14.2).
  const reuse = await refresh(tokens.refresh_token);
  assert.equal(reuse.status, 400, reuse.body);
  assert.equal(reuse.json && reuse.json.error, 'invalid_grant', reuse.body);
  const after = await refresh(r1.json.refresh_token);
  assert.equal(after.status, 400, `the newest refresh token of a revoked family: ${after.body}`);
  for (const [what, at] of [['first', tokens.access_token], ['refreshed', r1.json.access_token]]) {
    assert.deepEqual((await L.introspect(at)).json, { active: false }, `${what} access token of the revoked family`);
  }
  // the family of the code from after the restart is untouched
  assert.equal(await active(code.json.access_token), true);
}));

test('RFC 9700 §4.14.2 across a crash: SIGKILL during concurrent refresh rotations leaves each family with exactly one working refresh token, or revoked; never two', L.track(async () => {
  const first = await L.tokensFor('bob');
  const families = [{ rts: [first.tokens.refresh_token], ats: [first.tokens.access_token] }];
  for (let i = 0; i < 7; i += 1) {
    const s = await L.signIn(first.browser, {}, { user: 'bob' });
    assert.ok(s.code, describe(s.page));
    const t = await L.token({ grant_type: 'authorization_code', code: s.code, redirect_uri: L.cb, client_id: 'wic', code_verifier: s.sent.verifier });
    assert.equal(t.status, 200, t.body);
    families.push({ rts: [t.json.refresh_token], ats: [t.json.access_token] });
  }
  // Two families rotate once before the storm and then rest: their newest token must work
  // after the crash like any other.
  const resting = families.slice(0, 2);
  for (const f of resting) {
    const r = await refresh(f.rts[f.rts.length - 1]);
    assert.equal(r.status, 200, r.body);
    f.rts.push(r.json.refresh_token);
    f.ats.push(r.json.access_token);
  }
  const storm = families.slice(2);
  let rotations = 0;
  let killed = false;
  const loops = storm.map(async (f) => {
    while (!killed) {
      let r;
      try {
        r = await refresh(f.rts[f.rts.length - 1]);
      } catch {
        return; // the gateway is gone
      }
      assert.equal(r.status, 200, `rotation before the kill: ${r.body}`);
      f.rts.push(r.json.refresh_token);
      f.ats.push(r.json.access_token);
      rotations += 1;
    }
  });
  const deadline = Date.now() + 10000;
  while (rotations < 60 && Date.now() < deadline) await new Promise((r) => { setTimeout(r, 5); });
  assert.ok(rotations >= 60, `60 rotations before the kill (got ${rotations})`);
  // at a random point of the requests in flight: before, during or after their commits
  await new Promise((r) => { setTimeout(r, Math.random() * 20); });
  killed = true;
  process.kill(L.gw.child.pid, 'SIGKILL');
  const exit = await L.gw.exited;
  assert.equal(exit.signal, 'SIGKILL');
  await Promise.all(loops);

  await L.gw.start();

  for (const f of resting) {
    const r = await refresh(f.rts[f.rts.length - 1]);
    assert.equal(r.status, 200, `a resting family's newest refresh token after the crash: ${r.body}\n${L.gwLogTail()}`);
  }
  let continued = 0;
  for (const [i, f] of storm.entries()) {
    const newest = f.rts[f.rts.length - 1];
    const older = f.rts.length > 1 ? f.rts[f.rts.length - 2] : newest;
    const r = await refresh(newest);
    if (r.status === 200) {
      // The family went on: its newest token was the one. No other may work: an older one is
      // a reuse, which revokes the family, the token just issued included.
      continued += 1;
      const o = await refresh(older);
      assert.equal(o.status, 400, `family ${i}: a second refresh token worked after the crash: ${o.body}`);
      const next = await refresh(r.json.refresh_token);
      assert.equal(next.status, 400, `family ${i}: after a reuse the family is revoked: ${next.body}`);
      for (const at of [...f.ats, r.json.access_token]) assert.equal(await active(at), false, `family ${i}: access tokens revoked with the family`);
    } else {
      // The crash came after the family had moved on (the answer was lost): the newest token
      // the client holds is then a reuse, and the family is revoked with all its access tokens.
      assert.equal(r.status, 400, r.body);
      assert.equal(r.json && r.json.error, 'invalid_grant', r.body);
      for (const [j, at] of f.ats.entries()) {
        assert.equal(await active(at), false, `family ${i}: access token ${j} of ${f.ats.length} is still active, though no refresh token of the family works: the family was forgotten, not revoked`);
      }
    }
  }
  console.log(`# after the crash: ${continued} of ${storm.length} families went on, the others were revoked; ${rotations} rotations before the kill`);
}));

test('a damaged state file stops the start with an error naming it and what to do; the file is left as it was', L.track(async () => {
  const file = path.join(L.gw.stateDir, 'waf.sqlite3');
  assert.ok(fs.existsSync(file), `the state file is ${file}`);
  const exit = await L.gw.stop();
  assert.equal(exit.code, 0);
  const good = fs.readFileSync(file);
  const junk = Buffer.alloc(good.length, 0x42);
  fs.writeFileSync(file, junk);
  const mark = L.gw.logMark();
  await assert.rejects(L.gw.start(), /exited at start-up/);
  assert.notEqual(L.gw.exit.code, 0);
  const log = L.gw.logSince(mark);
  assert.match(log, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*(damaged|not an imsgw state file).*(backup|move it aside)`), log);
  assert.deepEqual(fs.readFileSync(file), junk, 'the damaged file is left for the operator');
  // imsgw check-config says so too, without a gateway
  await assert.rejects(imsgwCmd(['check-config', '--config', L.gw.configFile]), (e) => {
    assert.match(e.message, /waf\.state_dir: .*waf\.sqlite3 is damaged or is not an imsgw state file/, e.message);
    return true;
  });
  // put the good file back: the lab's last stop expects a running gateway
  fs.writeFileSync(file, good);
  await L.gw.start();
  await L.healthy('the state file restored');
}));
