'use strict';
// The WIC with short-lived access tokens (waf.token_ttl_secs = 20; JsSIP's REGISTER expiry is
// capped by imsgw to the token's remaining life): the page refreshes its token (refresh_token
// grant) before it runs out and renews the registration with it, so that Kamailio never is
// without alice's binding. ul.dump is polled every 250 ms across at least two refresh cycles;
// the binding must never be missing and its expiry must move forward. After each refresh the
// WIC renews the registration with the new token at once (a REGISTER carrying it, seen on the
// page's WebSocket, within 2 s of the token response, answered 200 with an expiry of about the
// new token's life) -- not only at JsSIP's next re-REGISTER timer. Artifacts:
// tests/artifacts/wic-refresh/.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { wicLab, sipFrames } = require('../lib/wic');
const { sleep } = require('../lib/env');

const TTL = 20;
const W = wicLab({ name: 'wic-refresh', block: 31, waf: { token_ttl_secs: TTL } });
const L = W.L;

test(`3. token_ttl_secs=${TTL}: the token is refreshed and the registration renewed, and Kamailio never lacks the binding`, L.track(async () => {
  const page = await W.newPage({ label: 'alice-refresh' });
  const refreshes = []; // { at, status }
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/oauth/token' && /grant_type=refresh_token/.test(r.postData() || '')) {
      const e = { at: Date.now(), status: null, answeredAt: null, access: null, exp: null };
      refreshes.push(e);
      r.response().then(async (res) => {
        e.answeredAt = Date.now();
        e.status = res ? res.status() : 'no response';
        const j = res ? await res.json().catch(() => null) : null;
        if (j && j.access_token) {
          e.access = j.access_token;
          e.exp = JSON.parse(Buffer.from(j.access_token.split('.')[1], 'base64url')).exp;
        }
      }).catch(() => { e.status = 'failed'; });
    }
  });
  await W.signIn(page, 'alice');
  await W.waitRegistered(page, 20000, 'Registered after sign-in');
  const t0 = Date.now();
  await W.shot(page, 'registered');

  // poll the registrar every 250 ms
  const samples = []; // { at, n, expires, abs, reg }
  let firstMissing = null;
  let maxAbs = 0;
  const moves = []; // { at, from, to }: the binding's absolute expiry moved forward
  const deadline = t0 + 4 * TTL * 1000;
  // the refreshes (200) that were followed, within 5 s, by the binding's expiry moving forward
  // to about the new token's expiry
  const renewed = () => refreshes.filter((r) => r.status === 200 && r.exp
    && moves.some((m) => m.at + t0 >= r.at && m.at + t0 <= r.answeredAt + 5000 && m.to >= r.exp - 3));
  // the REGISTERs of the page (WebSocket) with their token and the expiry granted in the 200
  const registers = () => {
    const fr = sipFrames(page).filter((f) => /REGISTER/.test(f.cseq || ''));
    return fr.filter((f) => f.dir === '>').map((q) => {
      const a = fr.find((x) => x.dir === '<' && x.cseq === q.cseq && /^SIP\/2\.0 [2-6]/.test(x.start) && !/^SIP\/2\.0 1/.test(x.start));
      return { at: q.at, cseq: q.cseq, token: (q.auth || '').replace(/^Bearer\s+/i, ''), status: a ? Number(a.start.slice(8, 11)) : null, granted: a ? Number(a.expires) : null };
    });
  };
  while (Date.now() < deadline) {
    const b = await W.bindings('alice');
    // Stamped when the registrar has answered: what it shows may be that recent (a stamp taken
    // before the query made a renewal look older than the refresh that caused it).
    const at = Date.now();
    const reg = await W.text(page, 'reg-state').catch(() => '?');
    const expires = b.length ? Number(b[0].Expires) : null;
    const abs = b.length ? Math.round(at / 1000) + expires : null;
    samples.push({ at: at - t0, n: b.length, expires, reg });
    if (!b.length && !firstMissing) {
      firstMissing = { at: at - t0, shot: await W.shot(page, 'binding-missing'), refreshes: refreshes.map((r) => ({ at: r.at - t0, status: r.status })) };
    }
    if (abs !== null) {
      if (maxAbs && abs > maxAbs + 3) moves.push({ at: at - t0, from: maxAbs, to: abs });
      maxAbs = Math.max(maxAbs, abs);
    }
    if (refreshes.filter((r) => r.answeredAt).length >= 2 && Date.now() > refreshes[1].answeredAt + 6000) break;
    await sleep(Math.max(0, 250 - (Date.now() - at)));
  }
  const elapsed = Date.now() - t0;
  await W.shot(page, 'after-refreshes');
  const regs = registers();
  const rel = (x) => (x ? x - t0 : x);
  const perRefresh = refreshes.slice(0, 2).map((r, i) => {
    const first = regs.find((g) => g.token && g.token === r.access);
    return {
      refresh: i + 1, sentAt: rel(r.at), answeredAt: rel(r.answeredAt), status: r.status, tokenExp: r.exp,
      firstRegisterWithNewToken: first ? { at: rel(first.at), delayMs: first.at - r.answeredAt, cseq: first.cseq, status: first.status, granted: first.granted } : null,
      registersBetween: regs.filter((g) => g.at >= r.at && (!first || g.at < first.at))
        .map((g) => ({ at: rel(g.at), cseq: g.cseq, status: g.status, granted: g.granted, token: g.token === r.access ? 'new' : 'old' })),
    };
  });
  const notReg = samples.filter((s) => s.reg !== 'Registered');
  const summary = `polled ${samples.length} times over ${elapsed} ms; refreshes ${JSON.stringify(refreshes.map((r) => ({ at: r.at - t0, status: r.status, exp: r.exp })))}; ` +
    `per refresh ${JSON.stringify(perRefresh)}; REGISTERs ${JSON.stringify(regs.map((g) => ({ at: rel(g.at), cseq: g.cseq, status: g.status, granted: g.granted })))}; ` +
    `expiry moves ${JSON.stringify(moves)}; samples with reg-state != Registered: ${notReg.length}` +
    `${notReg.length ? ` (first ${JSON.stringify(notReg.slice(0, 3))})` : ''}; Expires seen: ${[...new Set(samples.map((s) => s.expires))].join(',')}`;
  console.log(`${summary}`);
  assert.equal(firstMissing, null, `Kamailio had no binding for alice at some point: ${JSON.stringify(firstMissing)}\n${summary}\n${W.describe(page)}`);
  assert.ok(refreshes.length >= 2, `at least two refresh_token grants within ${deadline - t0} ms (token life ${TTL} s): ${summary}\n${W.describe(page)}`);
  assert.ok(refreshes.slice(0, 2).every((r) => r.status === 200), `refreshes answered 200: ${summary}`);
  for (const p of perRefresh) {
    const g = p.firstRegisterWithNewToken;
    assert.ok(g, `refresh ${p.refresh}: no REGISTER carried the new access token: ${summary}\n${W.describe(page)}`);
    // (the page's request/response and WebSocket events arrive in their own order: a REGISTER
    // may be stamped a few ms before the token response; it is after the refresh request)
    assert.ok(g.at >= p.sentAt && g.delayMs <= 2000, `refresh ${p.refresh}: the registration was not renewed with the new token at once: ` +
      `first REGISTER with it ${g.delayMs} ms after the token response (REGISTERs in between: ${JSON.stringify(p.registersBetween)}): ${summary}`);
    assert.equal(g.status, 200, `refresh ${p.refresh}: REGISTER with the new token answered ${g.status}: ${summary}`);
    assert.ok(g.granted >= TTL - 3, `refresh ${p.refresh}: the renewed registration lasts about the new token's life (${g.granted} s): ${summary}`);
  }
  assert.ok(renewed().length >= 2, `after each of two refreshes the binding's expiry moved forward within 5 s (re-REGISTER with the new token): ${summary}\n${W.describe(page)}`);
  assert.ok(samples.every((s) => s.expires === null || s.expires <= TTL + 1), `binding Expires never beyond the token life ${TTL} s: ${summary}`);
  assert.equal(await W.text(page, 'reg-state'), 'Registered', `still Registered at the end\n${W.describe(page)}`);
  assert.equal(await W.text(page, 'error'), '', '#error empty');
  W.assertClean(page);
}));
