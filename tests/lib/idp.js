'use strict';
// The external OpenID provider for the sign-in tests (lib/idp-server.mjs, oidc-provider 9) as a
// child process with a pid file: start, stop (SIGTERM by pid), restart on the same port and keys,
// and switch it to misbehave (bad ID-token signature, wrong nonce).
const { fork } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { sleep } = require('./env');

/** The IdP's accounts: login -> { sub, password, claims }. */
const USERS = {
  alice: { sub: 'sub-alice-0001', password: 'alice-pw', claims: { preferred_username: 'alice', name: 'Alice A', email: 'alice@example.org', email_verified: true } },
  bob: { sub: 'sub-bob-0002', password: 'bob-pw', claims: { preferred_username: 'bob', name: 'Bob B', email: 'bob@example.org', email_verified: true } },
  carol: { sub: 'sub-carol-0003', password: 'carol-pw', claims: { preferred_username: 'carol', name: 'Carol C', email: 'carol@example.org', email_verified: true } },
  dave: { sub: 'sub-dave-0004', password: 'dave-pw', claims: { preferred_username: 'dave', name: 'Dave D', email: 'dave@example.org', email_verified: true } },
  mallory: { sub: 'sub-mallory-0666', password: 'mallory-pw', claims: { preferred_username: 'mallory', name: 'Mallory M', email: 'mallory@example.org', email_verified: false } },
  nameless: { sub: 'sub-nameless-0777', password: 'nameless-pw', claims: { name: 'No Username', email: 'nameless@example.org', email_verified: true } },
};

class Idp {
  /**
   * @param {string} dir run directory
   * @param {object} o { port, clientSecret, redirectUris: [...], users (merged over USERS) }
   */
  constructor(dir, o) {
    this.dir = dir;
    this.o = o;
    this.port = o.port;
    this.clientId = 'imsgw';
    this.clientSecret = o.clientSecret || 'imsgw-idp-secret-0123456789';
    this.users = { ...USERS, ...(o.users || {}) };
    this.cfgFile = path.join(dir, 'idp.json');
    this.keysFile = path.join(dir, 'idp-keys.json');
    this.logFile = path.join(dir, 'idp.log');
    this.pidFile = path.join(dir, 'idp.pid');
    this.child = null;
  }

  get issuer() { return `http://127.0.0.1:${this.port}`; }

  writeConfig() {
    if (!fs.existsSync(this.keysFile)) {
      const jwk = (kid) => ({ ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' });
      const real = jwk('idp-key-1');
      const rogue = jwk('idp-key-1'); // same kid: only the signature betrays it
      fs.writeFileSync(this.keysFile, JSON.stringify({ real, rogue }));
    }
    fs.writeFileSync(this.cfgFile, JSON.stringify({
      port: this.port,
      issuer: this.issuer,
      keysFile: this.keysFile,
      users: this.users,
      clients: [{
        client_id: this.clientId,
        client_secret: this.clientSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        redirect_uris: this.o.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
      }],
    }, null, 1));
  }

  async start() {
    this.writeConfig();
    const log = fs.openSync(this.logFile, 'a');
    this.child = fork(path.join(__dirname, 'idp-server.mjs'), [this.cfgFile], { stdio: ['ignore', log, log, 'ipc'] });
    fs.closeSync(log);
    fs.writeFileSync(this.pidFile, `${this.child.pid}\n`);
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`IdP not ready within 10 s; log:\n${this.log().slice(-2000)}`)), 10000);
      this.child.on('message', (m) => { if (m && m.ready) { clearTimeout(t); resolve(); } });
      this.child.on('exit', (code) => { clearTimeout(t); reject(new Error(`IdP exited (${code}); log:\n${this.log().slice(-2000)}`)); });
    });
    this.mode = 'normal';
  }

  /** SIGTERM by pid and wait (SIGKILL after 5 s). */
  async stop() {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) { this.child = null; return; }
    try { process.kill(c.pid, 'SIGTERM'); } catch { /* gone */ }
    const t = setTimeout(() => { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    await this.exited;
    clearTimeout(t);
    fs.rmSync(this.pidFile, { force: true });
    this.child = null;
    await sleep(50);
  }

  async restart() { await this.stop(); await this.start(); }

  /** 'normal' | 'bad-signature' | 'bad-nonce' */
  setMode(mode) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('IdP did not acknowledge the mode')), 3000);
      const on = (m) => { if (m && m.mode === mode) { clearTimeout(t); this.child.off('message', on); this.mode = mode; resolve(); } };
      this.child.on('message', on);
      this.child.send({ mode });
    });
  }

  log() { try { return fs.readFileSync(this.logFile, 'utf8'); } catch { return ''; } }
  logMark() { return this.log().length; }
  logSince(mark) { return this.log().slice(mark); }
}

module.exports = { Idp, USERS };
