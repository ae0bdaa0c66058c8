'use strict';
// imsgw under test: writes its TOML config, starts IMSGW_BIN with a pid file, waits for
// /healthz, stops it by pid with SIGTERM and checks that it exits 0.
const { spawn, execFile } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { IMSGW_BIN, DOMAIN, sleep } = require('./env');

function httpGet(url, timeoutMs = 2000, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const q = (s) => JSON.stringify(String(s)); // TOML basic strings accept JSON escapes
/** A TOML value: strings quoted, arrays of them, numbers and booleans as they are. */
const tv = (v) => (Array.isArray(v) ? `[${v.map(tv).join(', ')}]`
  : typeof v === 'string' ? q(v)
    : v && typeof v === 'object' ? `{ ${Object.entries(v).map(([k, x]) => `${q(k)} = ${tv(x)}`).join(', ')} }`
      : String(v));

/** Environment for imsgw and its commands: the config file written here is the whole config. */
function imsgwEnv() {
  const env = { ...process.env, NO_COLOR: '1' };
  delete env.RUST_LOG; // the config's log.filter applies
  // imsgw reads IMSGW_<SECTION>__<KEY> overrides and refuses unknown IMSGW_* names, which
  // includes our own IMSGW_BIN
  for (const k of Object.keys(env)) if (k.startsWith('IMSGW_')) delete env[k];
  return env;
}

/** Runs an imsgw sub-command (token mint, keys rotate/list); resolves with its stdout. */
function imsgwCmd(args, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    execFile(IMSGW_BIN, args, { env: imsgwEnv(), timeout: timeoutMs }, (e, stdout, stderr) => {
      if (e) reject(new Error(`imsgw ${args.join(' ')}: ${e.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Runs an imsgw sub-command and resolves with { code, stdout, stderr }, whatever the exit. */
function imsgwRun(args, timeoutMs = 10000) {
  return new Promise((resolve) => {
    execFile(IMSGW_BIN, args, { env: imsgwEnv(), timeout: timeoutMs }, (e, stdout, stderr) => {
      resolve({ code: e ? e.code : 0, stdout, stderr });
    });
  });
}

const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

class Imsgw {
  /**
   * @param {string} dir run directory
   * @param {object} o { name, http, sip, upstream: 'sip:...', sipTls, tls: {cert,key,ca},
   *                     maxMessageSize, t1Ms, extraSip: {key: value}, extraHttp: {key: value}, drainSecs,
   *                     waf: { key_reload_secs, ... any [waf] key }, clients: [{id, secret, introspect}],
   *                     externalIssuers: [{issuer, jwks_uri, audience, algorithms}],
   *                     oidcProviders: [{name, issuer, client_id, ...}] ([[oidc.providers]]),
   *                     identity: {impu, impi, required_claims: {...}, static: {...}},
   *                     wwsf: {assets_dir, client_id} ([wwsf], the web client),
   *                     metrics: {listen, bearer_token_file} ([metrics]; lab.js sets listen to
   *                     ports().metrics, so /metrics is off the public listener as in production),
   *                     media: { listen, public_addresses, ims_address, rtp_ports,
   *                     inactivity_secs } ([media], the eIMS-AGW; lab.js mediaConfig()),
   *                     phones: { udp_listen, tcp_listen, tls_listen, ... } ([phones]),
   *                     phoneCode: { client_id, digits, ... } ([waf.phone_code]) }
   * Tokens: [waf] issuer is this gateway's HTTP base, key_dir is <dir>/<name>-keys.
   * State: [waf] state_dir is <dir>/<name>-state (the durable store, the default, so every test
   * runs what operators run, each gateway with a store of its own); waf: { store: 'memory' }
   * for one that forgets.
   */
  constructor(dir, o) {
    this.dir = dir;
    this.o = o;
    this.name = o.name || 'imsgw';
    this.configFile = path.join(dir, `${this.name}.toml`);
    this.logFile = path.join(dir, `${this.name}.log`);
    this.pidFile = path.join(dir, `${this.name}.pid`);
    this.child = null;
    this.exit = null; // { code, signal } once it exited
    this.keyDir = path.join(dir, `${this.name}-keys`);
    this.stateDir = path.join(dir, `${this.name}-state`);
  }

  get issuer() { return `http://127.0.0.1:${this.o.http}`; }
  get audience() { return `sip:${this.o.domain || DOMAIN}`; }

  get httpUrl() { return `http://127.0.0.1:${this.o.http}`; }
  /** Where GET /metrics is served: metrics.listen when set, else the HTTP listener. */
  get metricsUrl() { return this.o.metrics && this.o.metrics.listen ? `http://${this.o.metrics.listen}` : this.httpUrl; }
  get wsUrl() { return `ws://127.0.0.1:${this.o.http}/sip`; }

  writeConfig() {
    const o = this.o;
    const lines = [
      '[http]',
      `listen = ${q(`127.0.0.1:${o.http}`)}`,
      `drain_secs = ${o.drainSecs ?? 2}`,
      ...Object.entries(o.extraHttp || {}).map(([k, v]) => `${k} = ${tv(v)}`),
      '',
      '[sip]',
      `domain = ${q(o.domain || DOMAIN)}`,
      `listen = ${q(`127.0.0.1:${o.sip}`)}`,
      `upstream = ${q(o.upstream)}`,
    ];
    if (o.t1Ms) lines.push(`t1_ms = ${o.t1Ms}`);
    if (o.tls) {
      lines.push(`tls_listen = ${q(`127.0.0.1:${o.sipTls}`)}`,
        `tls_cert_file = ${q(o.tls.cert)}`, `tls_key_file = ${q(o.tls.key)}`, `tls_ca_file = ${q(o.tls.ca)}`);
    }
    for (const [k, v] of Object.entries(o.extraSip || {})) lines.push(`${k} = ${tv(v)}`);
    lines.push('', '[waf]', `issuer = ${q(this.issuer)}`, `key_dir = ${q(this.keyDir)}`);
    if (!('state_dir' in (o.waf || {}))) lines.push(`state_dir = ${q(this.stateDir)}`);
    for (const [k, v] of Object.entries(o.waf || {})) lines.push(`${k} = ${tv(v)}`);
    for (const c of o.clients || []) {
      lines.push('', '[[waf.clients]]');
      for (const [k, v] of Object.entries(c)) lines.push(`${k} = ${tv(v)}`);
    }
    for (const e of o.externalIssuers || []) {
      lines.push('', '[[waf.external_issuers]]');
      for (const [k, v] of Object.entries(e)) lines.push(`${k} = ${tv(v)}`);
    }
    // sign-in (OpenID Connect login at external providers, identity mapping)
    for (const p of o.oidcProviders || []) {
      lines.push('', '[[oidc.providers]]');
      for (const [k, v] of Object.entries(p)) lines.push(`${k} = ${tv(v)}`);
    }
    if (o.identity) {
      const { static: st, ...rest } = o.identity;
      lines.push('', '[identity]');
      for (const [k, v] of Object.entries(rest)) lines.push(`${k} = ${tv(v)}`);
      if (st) {
        lines.push('', '[identity.static]');
        for (const [k, v] of Object.entries(st)) lines.push(`${q(k)} = ${tv(v)}`);
      }
    }
    if (o.metrics) {
      lines.push('', '[metrics]');
      for (const [k, v] of Object.entries(o.metrics)) lines.push(`${k} = ${tv(v)}`);
    }
    if (o.media) {
      // the eIMS-AGW (issue 10): browser WebRTC <-> plain RTP toward the IMS
      lines.push('', '[media]');
      for (const [k, v] of Object.entries(o.media)) lines.push(`${k} = ${tv(v)}`);
    }
    if (o.phones) {
      // SIP phones over UDP, TCP and TLS (issue 13 §2)
      lines.push('', '[phones]');
      for (const [k, v] of Object.entries(o.phones)) lines.push(`${k} = ${tv(v)}`);
    }
    if (o.phoneCode) {
      lines.push('', '[waf.phone_code]');
      for (const [k, v] of Object.entries(o.phoneCode)) lines.push(`${k} = ${tv(v)}`);
    }
    if (o.wwsf) {
      // the web client (WIC) the gateway serves at / (browser tests: assets_dir = web/dist)
      lines.push('', '[wwsf]');
      for (const [k, v] of Object.entries(o.wwsf)) lines.push(`${k} = ${tv(v)}`);
    }
    lines.push('', '[websocket]', `max_message_size = ${o.maxMessageSize || 65536}`,
      `ping_interval_secs = ${o.pingSecs ?? 30}`, `register_timeout_secs = ${o.registerTimeoutSecs ?? 30}`);
    // more [websocket] keys (issue 11: handshake timeout, per-address caps)
    for (const [k, v] of Object.entries(o.websocket || {})) lines.push(`${k} = ${tv(v)}`);
    lines.push('', '[log]', `filter = ${q(o.logFilter || 'imsgw=debug,info')}`, '');
    fs.writeFileSync(this.configFile, lines.join('\n'));
  }

  async start() {
    this.exit = null; // a restart (stop() then start()) must not see the previous exit
    this.writeConfig();
    const log = fs.openSync(this.logFile, 'a');
    const env = imsgwEnv();
    this.child = spawn(IMSGW_BIN, ['serve', '--config', this.configFile], { stdio: ['ignore', log, log], env });
    fs.closeSync(log);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => { this.exit = { code, signal }; resolve(this.exit); });
      this.child.on('error', (e) => { this.exit = { code: -1, signal: null, error: e }; resolve(this.exit); });
    });
    fs.writeFileSync(this.pidFile, `${this.child.pid}\n`);
    const end = Date.now() + 15000;
    for (;;) {
      if (this.exit) throw new Error(`imsgw exited at start-up (${JSON.stringify(this.exit)}); log:\n${this.log().slice(-3000)}`);
      try {
        const r = await httpGet(`${this.httpUrl}/healthz`, 500);
        if (r.status === 200) return;
      } catch { /* not up yet */ }
      if (Date.now() > end) throw new Error(`imsgw /healthz not 200 within 15 s; log:\n${this.log().slice(-3000)}`);
      await sleep(50);
    }
  }

  /** SIGTERM by pid, wait for the exit; returns { code, signal } (the caller asserts code 0). */
  async stop(timeoutMs = 15000) {
    if (!this.child) return null;
    if (!this.exit) {
      try { process.kill(this.child.pid, 'SIGTERM'); } catch { /* gone */ }
      const t = setTimeout(() => { try { process.kill(this.child.pid, 'SIGKILL'); } catch { /* gone */ } }, timeoutMs);
      await this.exited;
      clearTimeout(t);
    }
    fs.rmSync(this.pidFile, { force: true });
    return this.exit;
  }

  /** Kills it by its pid file (for after() hooks when stop() was not reached). */
  killByPidFile() {
    try {
      const pid = Number(fs.readFileSync(this.pidFile, 'utf8').trim());
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch { /* no pid file or already gone */ }
    fs.rmSync(this.pidFile, { force: true });
  }

  log() {
    try { return fs.readFileSync(this.logFile, 'utf8'); } catch { return ''; }
  }

  /** The log lines written since `mark` (a length returned by logMark()). */
  logSince(mark) { return this.log().slice(mark); }
  logMark() { return this.log().length; }

  /** GET /metrics where it is served (headers: e.g. { authorization: 'Bearer …' }). */
  metrics(headers = {}) { return httpGet(`${this.metricsUrl}/metrics`, 2000, headers); }

  /** One counter from /metrics (0 when absent); `labels` as written, e.g. `transport="udp"`. */
  async counter(name, labels = '') {
    const r = await this.metrics();
    if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
    const re = new RegExp(`^${name}${labels ? `\\{${labels.replace(/[{}"]/g, '\\$&')}\\}` : ''} (\\d+)`, 'm');
    const m = re.exec(r.body);
    return m ? Number(m[1]) : 0;
  }

  /**
   * `imsgw token mint`: a token for `impu` signed with the gateway's current key, issued to
   * client `imsgw-operator` unless m.client_id names a client of the config.
   * @param {object} m { impi, ttl, scope, sub, client_id, cnf_jkt (a key's RFC 7638 thumbprint:
   *                    the token is bound to it, RFC 9449 §6.1) }
   */
  async mint(impu, m = {}) {
    const args = ['token', 'mint', '--config', this.configFile, '--impu', impu];
    for (const k of ['impi', 'ttl', 'scope', 'sub', 'client_id', 'cnf_jkt']) if (m[k] !== undefined) args.push(`--${k.replace('_', '-')}`, String(m[k]));
    const out = (await imsgwCmd(args)).trim();
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(out)) throw new Error(`imsgw token mint printed no JWS: ${out.slice(0, 200)}`);
    return out;
  }

  /** `imsgw keys rotate`: the new kid. */
  async rotateKeys() { return (await imsgwCmd(['keys', 'rotate', '--config', this.configFile])).trim(); }

  /** `imsgw keys list`: { kids, signing }. */
  async listKeys() {
    const lines = (await imsgwCmd(['keys', 'list', '--config', this.configFile])).trim().split('\n').filter(Boolean);
    const kids = lines.map((l) => l.split(/\s+/)[0]);
    const s = lines.find((l) => /\(signing\)/.test(l));
    return { kids, signing: s ? s.split(/\s+/)[0] : null };
  }

  /** The gateway's signing key: { kid, key (node KeyObject, private) } from key_dir/<kid>.pem. */
  async signingKey() {
    const { signing } = await this.listKeys();
    if (!signing) throw new Error('imsgw keys list marks no signing key');
    const pem = fs.readFileSync(path.join(this.keyDir, `${signing}.pem`), 'utf8');
    return { kid: signing, key: crypto.createPrivateKey(pem) };
  }

  /** Claims like the gateway's own tokens for `impu`, valid for `ttl` s, with `over` merged in
   *  (a key whose value is undefined is removed). */
  claims(impu, over = {}, ttl = 300) {
    const now = Math.floor(Date.now() / 1000);
    const c = {
      iss: this.issuer, aud: this.audience, sub: impu, impu, impi: impu.replace(/^sips?:/, ''),
      scope: 'sip', iat: now, nbf: now, exp: now + ttl, jti: crypto.randomUUID(),
    };
    for (const [k, v] of Object.entries(over)) { if (v === undefined) delete c[k]; else c[k] = v; }
    return c;
  }
}

/**
 * A compact JWS of `claims` with `header`, signed by `key` (a node KeyObject):
 * ES256 as JOSE r||s (ieee-p1363), RS256 PKCS#1 v1.5, HS256 with `key` as the HMAC secret,
 * `none` unsigned.
 */
function signJwt(header, claims, key) {
  const input = `${b64u(header)}.${b64u(claims)}`;
  let sig;
  switch (header.alg) {
    case 'ES256': sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }); break;
    case 'RS256': sig = crypto.sign('sha256', Buffer.from(input), key); break;
    case 'HS256': sig = crypto.createHmac('sha256', key).update(input).digest(); break;
    case 'none': sig = Buffer.alloc(0); break;
    default: throw new Error(`signJwt: no signer for ${header.alg}`);
  }
  return `${input}.${sig.toString('base64url')}`;
}

/** The claims of a JWS, unverified (for assertions about what was minted). */
function jwtClaims(token) { return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')); }

/** POST a form (application/x-www-form-urlencoded) with optional headers. */
function httpPostForm(url, form, headers = {}, timeoutMs = 3000) {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST', timeout: timeoutMs,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), ...headers },
    }, (res) => {
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

module.exports = { Imsgw, httpGet, httpPostForm, signJwt, jwtClaims, imsgwCmd, imsgwRun };
