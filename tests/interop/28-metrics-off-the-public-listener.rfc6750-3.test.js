'use strict';
// GET /metrics tells a stranger how busy the gateway is, how many people are connected and
// which refusals happen: it is not for whoever reaches the public listener. With
// metrics.listen it is served there only (404 on http.listen, and nothing else is served on
// the metrics listener); with metrics.bearer_token_file a scraper needs the token (RFC 6750
// Bearer, 401 with a challenge otherwise); and a config that would serve it unauthenticated on
// a listener reachable from outside (http.listen not loopback, or a public waf.issuer in front
// of a loopback one) does not start: check-config exits 2 naming metrics.listen.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { useLab } = require('../lib/lab');
const { Imsgw, httpGet, imsgwRun } = require('../lib/imsgw');

const L = useLab({ name: 'metrics-access', block: 35, transport: 'udp' });

test('metrics.listen: /metrics is served there and is 404 on http.listen; the metrics listener serves nothing else', L.track(async () => {
  assert.notEqual(L.gw.metricsUrl, L.gw.httpUrl, 'the lab sets metrics.listen');
  const pub = await httpGet(`${L.gw.httpUrl}/metrics`);
  assert.equal(pub.status, 404, `/metrics on http.listen: ${pub.status} ${pub.body.slice(0, 200)}`);
  assert.doesNotMatch(pub.body, /imsgw_/, 'no metric on the public listener');
  const m = await L.gw.metrics();
  assert.equal(m.status, 200, m.body.slice(0, 200));
  assert.match(m.body, /^imsgw_ims_untrusted_dropped_total\{transport="udp"\} \d+/m);
  assert.equal(await L.gw.counter('imsgw_ims_tls_client_cert_refused_total'), 0);
  for (const p of ['/healthz', '/sip', '/.well-known/oauth-authorization-server', '/oauth/jwks', '/']) {
    const r = await httpGet(`${L.gw.metricsUrl}${p}`);
    assert.equal(r.status, 404, `${p} on the metrics listener: ${r.status}`);
  }
  assert.equal((await httpGet(`${L.gw.httpUrl}/healthz`)).status, 200, 'the public listener still serves the rest');
}));

test('metrics.bearer_token_file: without the token or with another -> 401 and a Bearer challenge; with it -> 200', L.track(async () => {
  const token = `scrape-${require('node:crypto').randomBytes(24).toString('base64url')}`;
  const file = path.join(L.dir, 'metrics.token');
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600 });
  const base = L.p.base + 50;
  const gw = new Imsgw(L.dir, {
    name: 'imsgw-token', http: base, sip: base + 2, upstream: L.upstreamUri(), metrics: { bearer_token_file: file },
  });
  try {
    await gw.start();
    assert.equal(gw.metricsUrl, gw.httpUrl, 'on the HTTP listener, behind the token');
    const none = await gw.metrics();
    assert.equal(none.status, 401, none.body);
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="imsgw-metrics"');
    assert.doesNotMatch(none.body, /imsgw_/);
    for (const auth of ['Bearer not-the-token', `Basic ${token}`, `Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`]) {
      const r = await gw.metrics({ authorization: auth });
      assert.equal(r.status, 401, `${auth.split(' ')[0]} with a wrong credential: ${r.status}`);
      assert.doesNotMatch(r.body, /imsgw_/);
    }
    const ok = await gw.metrics({ authorization: `Bearer ${token}` });
    assert.equal(ok.status, 200);
    assert.doesNotMatch(gw.log(), new RegExp(token), 'the token is never logged');
  } finally {
    const exit = await gw.stop();
    gw.killByPidFile();
    assert.equal(exit && exit.code, 0, `imsgw-token exit: ${JSON.stringify(exit)}`);
  }
}));

test('start-up refuses unauthenticated /metrics on a listener reachable from outside, naming metrics.listen; either fix starts', L.track(async () => {
  const write = (name, http, extra = '') => {
    const f = path.join(L.dir, `${name}.toml`);
    fs.writeFileSync(f, `[http]\nlisten = "${http}"\n\n[sip]\ndomain = "ims.example"\nupstream = "${L.upstreamUri()}"\n\n`
      + `[waf]\nkey_dir = "${path.join(L.dir, 'check-keys')}"\n${extra}`);
    return f;
  };
  for (const [what, f] of [
    ['http.listen on every interface', write('public', '0.0.0.0:8080')],
    ['a public waf.issuer in front of a loopback http.listen', write('proxied', '127.0.0.1:8080', 'issuer = "https://webrtc.operator.example"\n')],
  ]) {
    const r = await imsgwRun(['check-config', '--config', f]);
    assert.equal(r.code, 2, `${what}: check-config exit ${r.code}; ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /metrics\.listen/, `${what}: the error names the key`);
    assert.match(r.stderr, /metrics\.bearer_token_file/, `${what}: and the other fix`);
  }
  const fixed = write('fixed', '0.0.0.0:8080', '\n[metrics]\nlisten = "127.0.0.1:9090"\n');
  const ok = await imsgwRun(['check-config', '--config', fixed]);
  assert.equal(ok.code, 0, `with metrics.listen: ${ok.stdout}${ok.stderr}`);
  const loop = await imsgwRun(['check-config', '--config', write('loopback', '127.0.0.1:8080')]);
  assert.equal(loop.code, 0, `a loopback-only gateway keeps /metrics beside the rest: ${loop.stderr}`);
}));
