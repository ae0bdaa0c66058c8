#!/usr/bin/env node
// wafbench: the memory benchmark of issue 9 §1. Starts Kamailio, the test OpenID provider and
// imsgw as the interop tests do (tests/lib), floods the WAF with anonymous requests that make it
// store something (authorize with a big state, sign-in pages, logins, device codes) from many
// loopback addresses, while a person signs in, gets a token, REGISTERs and approves a phone.
// Samples the gateway's VmRSS every 100 ms and reports memory, answers and whether the person
// got through. Bounded by count and time; stops everything it started, by pid. See README.md.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO, env, Kamailio, Imsgw, Idp, httpGet } from './lib/testlib.mjs';
import { Flood, DEFAULT_MIX, parseMix } from './lib/flood.mjs';
import { RssSampler, summarise, series } from './lib/rss.mjs';
import { signInAndRegister } from './lib/person.mjs';
import { text } from './lib/report.mjs';

const USAGE = `usage: tools/wafbench/run.sh [options]     (or: node tools/wafbench/wafbench.mjs [options])

  --count N           requests in the flood (default 100000)
  --max-secs S        the flood stops after S seconds even if N were not sent (default 600)
  --concurrency C     requests in flight (default 64)
  --addresses A       source addresses 127.1.x.y, used in turn (default 4096, at most 65024)
  --mix SPEC          endpoint=weight,... (default ${DEFAULT_MIX})
  --state-kb K        size of the big state of authorize-big, KB (default 60)
  --person-at F       the person starts when F of the count (or of max-secs) is used (default 0.5)
  --settle-secs S     read VmRSS again S seconds after the flood (default 30; 0: skip)
  --sample-ms MS      VmRSS sampling interval (default 100)
  --rss-limit-mb MB   stop the flood early if the gateway's VmRSS passes MB (default 4096; 0: none)
  --timeout-ms MS     per-request timeout of the flood (default 10000)
  --block B           port block as in the tests: ports 21000+100*B.. (default 70)
  --log-filter F      the gateway's log filter (default "warn")
  --label TEXT        a name for this run in the report (e.g. the commit under test)
  --out FILE          also write the report as JSON to FILE
  --keep              keep the run directory (logs, config) even when all went well

Environment: IMSGW_BIN (default target/release/imsgw).
Exit status: 0 when the person signed in, registered and approved a phone and the gateway stayed
up and exited 0 on SIGTERM; 1 otherwise; 2 for a usage error.`;

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

function options() {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '100000' },
      'max-secs': { type: 'string', default: '600' },
      concurrency: { type: 'string', default: '64' },
      addresses: { type: 'string', default: '4096' },
      mix: { type: 'string', default: DEFAULT_MIX },
      'state-kb': { type: 'string', default: '60' },
      'person-at': { type: 'string', default: '0.5' },
      'settle-secs': { type: 'string', default: '30' },
      'sample-ms': { type: 'string', default: '100' },
      'rss-limit-mb': { type: 'string', default: '4096' },
      'timeout-ms': { type: 'string', default: '10000' },
      block: { type: 'string', default: '70' },
      'log-filter': { type: 'string', default: 'warn' },
      label: { type: 'string', default: '' },
      out: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) { console.log(USAGE); process.exit(0); }
  const num = (k, min, max) => {
    const v = Number(values[k]);
    if (!Number.isFinite(v) || v < min || v > max) throw new Error(`--${k} must be a number in ${min}..${max}`);
    return v;
  };
  return {
    count: num('count', 1, 1e8),
    maxSecs: num('max-secs', 1, 86400),
    concurrency: num('concurrency', 1, 4096),
    addresses: num('addresses', 1, 65024),
    mix: values.mix,
    mixParsed: parseMix(values.mix),
    stateKb: num('state-kb', 0, 1024),
    personAt: num('person-at', 0, 1),
    settleSecs: num('settle-secs', 0, 3600),
    sampleMs: num('sample-ms', 10, 10000),
    rssLimitMb: num('rss-limit-mb', 0, 1e6),
    timeoutMs: num('timeout-ms', 100, 600000),
    block: num('block', 1, 99),
    logFilter: values['log-filter'],
    label: values.label,
    out: values.out,
    keep: values.keep,
  };
}

/** The lab of the sign-in tests (tests/lib/signin.js) on port block `block`, not yet started. */
function lab(dir, o) {
  const p = env.ports(o.block);
  const cb = `http://127.0.0.1:${p.base + 6}/cb`; // nothing listens there: the agent stops at it
  const idpSecret = `idp-secret-${crypto.randomBytes(8).toString('hex')}`;
  const idp = new Idp(dir, { port: p.base + 5, clientSecret: idpSecret, redirectUris: [`http://127.0.0.1:${p.http}/auth/callback`] });
  const kam = new Kamailio(dir, { port: p.ims, tlsPort: p.imsTls, defines: ['FR_TIMER=3000'] });
  const gw = new Imsgw(dir, {
    http: p.http, sip: p.sip, sipTls: p.sipTls, upstream: `sip:127.0.0.1:${p.ims};transport=udp`,
    logFilter: o.logFilter,
    waf: { device_poll_secs: 1 },
    clients: [
      { id: 'wic', first_party: true, redirect_uris: [cb], grants: ['authorization_code', 'refresh_token', DEVICE_GRANT] },
      { id: 'phone', grants: [DEVICE_GRANT, 'refresh_token'] },
    ],
    oidcProviders: [{
      name: 'demo', display_name: 'Demo IdP', issuer: idp.issuer, client_id: 'imsgw', client_secret: idpSecret,
      scopes: ['openid', 'profile', 'email'],
    }],
    identity: { impu: 'sip:{preferred_username}@{sip.domain}', impi: '{preferred_username}@{sip.domain}', required_claims: { email_verified: true } },
  });
  return { idp, kam, gw, cb, ports: p };
}

async function main() {
  let o;
  try {
    o = options();
  } catch (e) {
    console.error(`wafbench: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  if (!fs.existsSync(env.IMSGW_BIN)) {
    console.error(`wafbench: no gateway binary at ${env.IMSGW_BIN}; build it (cargo build --release -p imsgw) or set IMSGW_BIN`);
    return 2;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imsgw-wafbench-'));
  console.log(`wafbench: run directory ${dir}`);
  const L = lab(dir, o);
  const uas = [];
  const problems = [];
  let flood = null;
  let sampler = null;
  let stopped = false;

  // Everything started is stopped by pid: the UAs, the gateway (SIGTERM, exit 0 expected),
  // the provider, Kamailio. A second signal or the watchdog kills without waiting.
  const cleanup = async () => {
    if (stopped) return null;
    stopped = true;
    if (sampler) await sampler.stop().catch(() => {});
    for (const ua of uas) await ua.stop().catch(() => {});
    let exit = null;
    if (L.gw.child) {
      exit = await L.gw.stop();
      L.gw.killByPidFile();
    }
    await L.idp.stop().catch((e) => problems.push(`stopping the provider: ${e.message}`));
    await L.kam.stop().catch((e) => problems.push(`stopping Kamailio: ${e.message}`));
    return exit;
  };
  const hardKill = () => {
    for (const c of [L.gw.child, L.idp.child]) if (c && c.exitCode === null) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }
    try { execFileSync(path.join(env.LAB, 'kamailio-stop.sh'), [dir, 'ims'], { timeout: 20000 }); } catch { /* reported by its log */ }
  };
  let signals = 0;
  const onSignal = () => {
    signals += 1;
    if (signals > 1) { hardKill(); process.exit(130); }
    problems.push('interrupted by a signal');
    if (flood) flood.stop('signal');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const watchdog = setTimeout(() => {
    console.error('wafbench: watchdog: the run took far longer than --max-secs allows; killing what it started');
    hardKill();
    process.exit(3);
  }, (o.maxSecs + o.settleSecs + 300) * 1000);
  watchdog.unref();

  const report = {
    label: o.label,
    tool: { commit: gitHead(), node: process.version, at: new Date().toISOString() },
    config: { ...o, mixParsed: undefined, keep: undefined, out: undefined },
    imsgw: { bin: env.IMSGW_BIN, pid: null, exit: null },
    flood: null, memory: null, person: null, metrics: {}, problems, ok: false,
  };
  try {
    await L.idp.start();
    await L.kam.start();
    await L.gw.start();
    const pid = L.gw.child.pid;
    report.imsgw.pid = pid;
    flood = new Flood({
      port: L.ports.http, count: o.count, concurrency: o.concurrency, maxMs: o.maxSecs * 1000,
      addresses: o.addresses, mix: o.mixParsed, stateBytes: Math.round(o.stateKb * 1024),
      clientId: 'wic', redirectUri: L.cb, provider: 'demo', deviceClient: 'phone', timeoutMs: o.timeoutMs,
    });
    sampler = new RssSampler(pid, {
      intervalMs: o.sampleMs,
      limitKib: o.rssLimitMb * 1024,
      onLimit: (kib) => { problems.push(`VmRSS passed --rss-limit-mb ${o.rssLimitMb} (${kib} KiB): flood stopped early`); flood.stop('rss-limit'); },
      onGone: () => { problems.push('the gateway process is gone'); flood.stop('gateway-gone'); },
    });
    await httpGet(`${L.gw.httpUrl}/healthz`);
    await env.sleep(1000); // let start-up allocations settle before the baseline
    const base = sampler.now();
    const personArgs = { gw: L.gw, idp: L.idp, cb: L.cb, user: 'alice', provider: 'demo', client: 'wic', deviceClient: 'phone', uas };
    let person = null;
    let personAt = null;
    const startPerson = (during) => {
      personAt = { startedDuringFlood: during, startedAtRequests: flood.sent, startedAtS: (Date.now() - base.at) / 1000 };
      person = signInAndRegister(personArgs).then((r) => ({ ...r, endedDuringFlood: flood.endedAt === null }));
    };
    console.log(`wafbench: flood of ${o.count} requests (at most ${o.maxSecs} s); baseline VmRSS ${base.rssKib} KiB`);
    const progress = setInterval(() => {
      if (!person && (flood.sent >= o.personAt * o.count || Date.now() - base.at >= o.personAt * o.maxSecs * 1000)) startPerson(true);
    }, 50);
    const ticker = setInterval(() => {
      const now = sampler.now();
      console.log(`  ${Math.round((Date.now() - base.at) / 1000)} s: ${flood.sent} sent, ${flood.answered} answered, ${flood.failed} failed; VmRSS ${now ? now.rssKib : '?'} KiB`);
    }, 10000);
    await flood.run();
    clearInterval(progress);
    clearInterval(ticker);
    const end = sampler.now();
    if (!person) startPerson(false);
    const who = await env.within(person, 120000, 'the person\'s sign-in').catch((e) => ({ ok: false, steps: [{ name: 'person', ok: false, ms: 0, error: e.message }] }));
    report.person = { user: 'alice', ...personAt, ...who };
    let after = null;
    if (o.settleSecs > 0 && !problems.includes('interrupted by a signal')) {
      for (let i = 0; i < o.settleSecs * 10 && flood.stopReason !== 'signal'; i += 1) await env.sleep(100);
      after = sampler.now();
    }
    report.metrics = await wafMetrics(L.gw).catch((e) => ({ error: e.message }));
    const samples = await sampler.stop();
    const last = sampler.now() || after || end; // after the last sample: VmHWM >= every sample
    const fr = flood.result();
    report.flood = fr;
    const s = summarise(samples, base.at, Date.now());
    const answered = fr.answered;
    report.memory = {
      baselineKib: base.rssKib,
      peakKib: s.peakRssKib,
      peakAtS: s.peakAtS,
      hwmKib: last ? last.hwmKib : null,
      endKib: end ? end.rssKib : null,
      settleSecs: after ? o.settleSecs : 0,
      afterSettleKib: after ? after.rssKib : null,
      bytesPerRequest: end && answered ? Math.round(((end.rssKib - base.rssKib) * 1024) / answered) : null,
      cpuFloodS: end ? Math.round((end.cpuS - base.cpuS) * 100) / 100 : null,
      samples: s.samples,
      meanIntervalMs: s.meanIntervalMs,
      seriesKib: series(samples, base.at), // [seconds since the flood started, highest VmRSS KiB in that second]
    };
  } catch (e) {
    problems.push(`run: ${e.message}`);
  } finally {
    const exit = await cleanup().catch((e) => { problems.push(`cleanup: ${e.message}`); return null; });
    report.imsgw.exit = exit;
    if (exit && exit.code !== 0) problems.push(`the gateway did not exit 0 on SIGTERM: ${JSON.stringify(exit)}`);
  }
  if (!report.person) report.person = { user: 'alice', ok: false, steps: [] };
  if (!report.person.ok) problems.push('the person did not get through (see the steps)');
  report.ok = report.person.ok && problems.length === 0;
  try {
    console.log(`\n${text(report)}`);
  } catch (e) {
    console.log(JSON.stringify(report, null, 1));
    console.error(`wafbench: report: ${e.message}`);
  }
  if (o.out) {
    fs.writeFileSync(o.out, `${JSON.stringify(report, null, 1)}\n`);
    console.log(`JSON report: ${path.resolve(o.out)}`);
  }
  if (report.ok && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
  else console.log(`logs kept in ${dir}`);
  clearTimeout(watchdog);
  return report.ok ? 0 : 1;
}

/** The WAF's and store's lines of /metrics, if the gateway has any (later versions count caps). */
async function wafMetrics(gw) {
  const r = await gw.metrics();
  const out = {};
  for (const l of r.body.split('\n')) {
    const m = /^(imsgw_(?:waf|store|http)\S*)\s+(\S+)$/.exec(l);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

function gitHead() {
  try {
    return execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

main().then((code) => process.exit(code), (e) => { console.error(e); process.exit(1); });
