'use strict';
// One test file's lab: a run directory, Kamailio (IMS side), imsgw, JsSIP UAs and sipp runs,
// all torn down in after() -- by pid, even when a test failed.
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { promisify } = require('node:util');
const { before, after } = require('node:test');
const env = require('./env');
const { Kamailio } = require('./kamailio');
const { Imsgw } = require('./imsgw');
const sipp = require('./sipp');
const { TestUA } = require('./jssip');
const { RawSipClient } = require('./wsclient');
const baresip = require('./baresip');

const run = promisify(execFile);

/**
 * Registers before()/after() hooks for the calling test file and returns the lab.
 * @param {object} o { name, block, transport: 'udp'|'tcp'|'tls', kamailio: { defines },
 *                     imsgw: { maxMessageSize, t1Ms, ... }, beforeStart: async (L) => {},
 *                     gateway: false (Kamailio only, no imsgw: the baresip lab self-test),
 *                     media: true | { inactivity_secs, ... } (imsgw's [media] section on the
 *                     block's ports, see mediaConfig()) }
 */
function useLab(o) {
  const L = {
    name: o.name,
    p: env.ports(o.block),
    transport: o.transport || 'udp',
    failed: false,
    uas: [],
    raws: [],
    phones: [],
  };

  L.upstreamUri = () => {
    switch (L.transport) {
      case 'udp': return `sip:127.0.0.1:${L.p.ims};transport=udp`;
      case 'tcp': return `sip:127.0.0.1:${L.p.ims};transport=tcp`;
      case 'tls': return `sip:127.0.0.1:${L.p.imsTls};transport=tls`;
      default: throw new Error(`bad transport ${L.transport}`);
    }
  };
  /** The host:port imsgw names itself with toward the IMS (Path, Record-Route). */
  L.imsgwAddr = () => `127.0.0.1:${L.transport === 'tls' ? L.p.sipTls : L.p.sip}`;

  /** Extra teardown (e.g. an IdP), run after imsgw stopped, in reverse order. */
  L.cleanups = [];
  L.onStop = (fn) => { L.cleanups.push(fn); };

  before(async () => {
    L.dir = env.rundir(o.name);
    // peers the gateway needs at start-up (e.g. an external issuer's JWKS server, an IdP)
    if (o.beforeStart) await o.beforeStart(L);
    if (L.transport === 'tls') {
      const tlsDir = path.join(L.dir, 'tls');
      await run(path.join(env.LAB, 'make-tls-cert.sh'), [tlsDir], { timeout: 20000 });
      L.tls = { cert: path.join(tlsDir, 'server.pem'), key: path.join(tlsDir, 'server.key'), ca: path.join(tlsDir, 'ca.pem') };
    }
    L.kam = new Kamailio(L.dir, {
      port: L.p.ims,
      tlsPort: L.p.imsTls,
      tls: L.tls,
      defines: (o.kamailio && o.kamailio.defines) || ['FR_TIMER=3000'],
    });
    await L.kam.start();
    if (o.gateway === false) return;
    L.gw = new Imsgw(L.dir, {
      http: L.p.http,
      metrics: { listen: `127.0.0.1:${L.p.metrics}` },
      sip: L.p.sip,
      sipTls: L.p.sipTls,
      upstream: L.upstreamUri(),
      tls: L.tls,
      ...(o.media ? { media: mediaConfig(L.p, o.media === true ? {} : o.media) } : {}),
      ...(o.imsgw || {}),
    });
    await L.gw.start();
  });

  after(async () => {
    const problems = [];
    for (const ua of L.uas) {
      await ua.stop().catch(() => {});
      if (L.failed) fs.writeFileSync(path.join(L.dir || '/tmp', `ws-${ua.user}.frames`), ua.socket.dump());
    }
    for (const r of L.raws) r.terminate();
    sipp.killAll();
    for (const b of L.phones) await b.stop().catch(() => {});
    if (L.gw) {
      const exit = await L.gw.stop();
      if (!exit || exit.code !== 0) {
        problems.push(`imsgw did not exit 0 on SIGTERM: ${JSON.stringify(exit)}; log tail:\n${L.gw.log().slice(-2000)}`);
      }
      L.gw.killByPidFile();
    }
    for (const fn of L.cleanups.reverse()) await Promise.resolve().then(fn).catch((e) => problems.push(`cleanup: ${e.message}`));
    if (L.kam) await L.kam.stop().catch((e) => problems.push(`kamailio-stop: ${e.message}`));
    if (L.dir) env.removeRundir(L.dir, L.failed || problems.length > 0);
    if (problems.length) throw new Error(problems.join('\n'));
  });

  /** Wraps a test body so that a failure keeps the run directory and the WebSocket frames. */
  L.track = (fn) => async (t) => {
    try {
      await fn(t);
    } catch (e) {
      L.failed = true;
      throw e;
    }
  };

  /** `imsgw token mint` for sip:<user>@<domain> (m: { ttl, scope, impi, sub }). */
  L.mint = (user, m = {}) => L.gw.mint(`sip:${user}@${env.DOMAIN}`, m);

  /**
   * A JsSIP UA for a fresh unique user; started and registered unless o.register === false.
   * It gets a token minted for its own IMPU (RFC 8898), unless uo.token is given (null: none).
   */
  L.ua = async (prefix, uo = {}) => {
    const user = uo.user || env.uniqueUser(prefix);
    const token = uo.token !== undefined ? uo.token : await L.mint(user, uo.mint || {});
    const ua = new TestUA({ wsUrl: L.gw.wsUrl, ...uo, user, token });
    L.uas.push(ua);
    ua.registerResponse = await ua.start();
    return ua;
  };

  L.raw = async (opts) => {
    const c = await RawSipClient.open(L.gw.wsUrl, opts);
    L.raws.push(c);
    return c;
  };

  /** sipp at the IMS side toward Kamailio over UDP (or o.transport 't1' for TCP). */
  let sippRuns = 0;
  L.sipp = (so) => {
    sippRuns += 1;
    return sipp.run({
      dir: L.dir,
      name: `${so.scenario.replace(/\.xml$/, '')}-${sippRuns}`,
      port: L.p.sipp(sippRuns % 20),
      mediaPort: L.p.media(sippRuns % 10),
      target: `127.0.0.1:${L.p.ims}`,
      timeoutSecs: 15,
      ...so,
    });
  };

  /**
   * A baresip phone (lib/baresip.js) registered at this lab's Kamailio as a fresh unique user,
   * on the ports of instance `i` (0..4) of the block; stopped in after().
   * bo: { prefix ('carol'), user, answermode, codecs, tone, ... (Baresip options) }
   */
  L.baresip = async (i, bo = {}) => {
    const user = bo.user || env.uniqueUser(bo.prefix || 'carol');
    const b = new baresip.Baresip(L.dir, {
      name: `baresip${i}-${user}`,
      user,
      registrar: `127.0.0.1:${L.p.ims}`,
      ...baresip.portsFor(L.p.base, i),
      ...bo,
    });
    L.phones.push(b);
    try {
      await b.start();
    } catch (e) {
      await b.stop().catch(() => {});
      throw e;
    }
    return b;
  };

  /** Stops every phone of L.baresip() (a test that is done with them: frees their ports). */
  L.stopPhones = async () => {
    await Promise.all(L.phones.map((b) => b.stop().catch(() => {})));
    L.phones.splice(0);
  };

  return L;
}

/**
 * imsgw's [media] section (issue 10) on a block's ports: the one WebRTC UDP port base+30, the
 * IMS-side RTP range base+50..base+69, all on loopback; `over` replaces or adds keys.
 */
function mediaConfig(p, over = {}) {
  return {
    listen: `127.0.0.1:${p.base + 30}`,
    public_addresses: ['127.0.0.1'],
    ims_address: '127.0.0.1',
    rtp_ports: `${p.base + 50}-${p.base + 69}`,
    inactivity_secs: 30,
    ...over,
  };
}

module.exports = { useLab, mediaConfig, ...env };
