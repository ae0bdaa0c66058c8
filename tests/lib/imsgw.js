'use strict';
// imsgw under test: writes its TOML config, starts IMSGW_BIN with a pid file, waits for
// /healthz, stops it by pid with SIGTERM and checks that it exits 0.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { IMSGW_BIN, DOMAIN, sleep } = require('./env');

function httpGet(url, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
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

class Imsgw {
  /**
   * @param {string} dir run directory
   * @param {object} o { name, http, sip, upstream: 'sip:...', sipTls, tls: {cert,key,ca},
   *                     maxMessageSize, t1Ms, extraSip: {key: value}, drainSecs }
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
  }

  get httpUrl() { return `http://127.0.0.1:${this.o.http}`; }
  get wsUrl() { return `ws://127.0.0.1:${this.o.http}/sip`; }

  writeConfig() {
    const o = this.o;
    const lines = [
      '[http]',
      `listen = ${q(`127.0.0.1:${o.http}`)}`,
      `drain_secs = ${o.drainSecs ?? 2}`,
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
    for (const [k, v] of Object.entries(o.extraSip || {})) lines.push(`${k} = ${typeof v === 'string' ? q(v) : v}`);
    lines.push('', '[websocket]', `max_message_size = ${o.maxMessageSize || 65536}`,
      `ping_interval_secs = ${o.pingSecs ?? 30}`, '', '[log]', `filter = ${q(o.logFilter || 'imsgw=debug,info')}`, '');
    fs.writeFileSync(this.configFile, lines.join('\n'));
  }

  async start() {
    this.writeConfig();
    const log = fs.openSync(this.logFile, 'a');
    const env = { ...process.env, NO_COLOR: '1' };
    delete env.RUST_LOG; // the config's log.filter applies
    // imsgw reads IMSGW_<SECTION>__<KEY> overrides and refuses unknown IMSGW_* names, which
    // includes our own IMSGW_BIN: the config file written above is the whole configuration
    for (const k of Object.keys(env)) if (k.startsWith('IMSGW_')) delete env[k];
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

  metrics() { return httpGet(`${this.httpUrl}/metrics`); }
}

module.exports = { Imsgw, httpGet };
