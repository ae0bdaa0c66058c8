'use strict';
// Kamailio as the IMS side (P-CSCF + registrar), through the lab scripts in deploy/lab.
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { promisify } = require('node:util');
const { LAB } = require('./env');

const run = promisify(execFile);

class Kamailio {
  /**
   * @param {string} dir run directory (pid file, log, control socket go there)
   * @param {object} o  { name, port, tlsPort, tls: {cert,key,ca}, defines: ['FR_TIMER=2000', ...] }
   */
  constructor(dir, o) {
    this.dir = dir;
    this.name = o.name || 'ims';
    this.port = o.port;
    this.tlsPort = o.tlsPort;
    this.tls = o.tls;
    this.defines = o.defines || [];
    this.cfg = path.join(LAB, 'kamailio-ims.cfg');
  }

  get ctl() { return `unix:${path.join(this.dir, `${this.name}.ctl`)}`; }
  get logFile() { return path.join(this.dir, `${this.name}.log`); }
  get pidFile() { return path.join(this.dir, `${this.name}.pid`); }

  async start() {
    const args = [this.name, this.cfg, this.dir, '-A', `IMS_PORT=${this.port}`];
    if (this.tls) {
      args.push('-A', `IMS_TLS_PORT=${this.tlsPort}`, '-A', 'WITH_TLS',
        '-A', `TLS_CERT="${this.tls.cert}"`, '-A', `TLS_KEY="${this.tls.key}"`, '-A', `TLS_CA="${this.tls.ca}"`);
    }
    for (const d of this.defines) args.push('-A', d);
    try {
      await run(path.join(LAB, 'kamailio-start.sh'), args, { timeout: 20000 });
    } catch (e) {
      throw new Error(`kamailio-start.sh failed: ${e.stderr || e.message}`);
    }
  }

  /** Stops it by its pid file (kamailio-stop.sh); no error when it is not running. */
  async stop() {
    await run(path.join(LAB, 'kamailio-stop.sh'), [this.dir, this.name], { timeout: 30000 });
  }

  running() {
    try {
      const pid = Number(fs.readFileSync(this.pidFile, 'utf8').trim());
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /** `kamcmd ul.dump`, raw text. */
  async ulDumpText() {
    const { stdout } = await run('kamcmd', ['-s', this.ctl, 'ul.dump'], { timeout: 10000 });
    return stdout;
  }

  /** `ul.dump` parsed: [{ aor, contacts: [{ Contact, Path, Expires, ... }] }]. */
  async ulDump() {
    return parseUlDump(await this.ulDumpText());
  }

  /** The bindings of one AOR (user part or full AOR). */
  async bindings(user) {
    const all = await this.ulDump();
    const hit = all.find((r) => r.aor === user || r.aor.split('@')[0] === user);
    return hit ? hit.contacts : [];
  }

  log() {
    try { return fs.readFileSync(this.logFile, 'utf8'); } catch { return ''; }
  }
}

/**
 * Parses kamcmd's ul.dump text. It looks like (indentation varies):
 *   Domain: location ...
 *     AOR: alice@ims.example
 *       Contact: {
 *           Address: sip:...
 *           Expires: 599
 *           Path: <sip:...;lr;ob>
 *           ...
 *       }
 * Every "Key: value" line inside a Contact block becomes a property of that contact.
 */
function parseUlDump(text) {
  const records = [];
  let aor = null;
  let contact = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    let m;
    if ((m = /^AoR:\s*(.+)$/i.exec(line))) {
      aor = { aor: m[1].trim(), contacts: [] };
      records.push(aor);
      contact = null;
    } else if (/^Contact:\s*\{\s*$/i.test(line)) {
      contact = {};
      if (aor) aor.contacts.push(contact);
    } else if (line === '}') {
      contact = null;
    } else if (contact && (m = /^([A-Za-z0-9_-]+):\s*(.*)$/.exec(line))) {
      contact[m[1]] = m[2];
    }
  }
  return records;
}

module.exports = { Kamailio, parseUlDump };
