'use strict';
// baresip 1.0 (Debian baresip-core) as an IMS-side phone with real media: one config directory
// per instance in the run directory, registered straight at the lab's Kamailio (no
// authentication there), driven and watched over its ctrl_tcp socket (netstring-framed JSON).
//
// What baresip 1.0 does here (found by running it, see the report in tests/README.md):
// - ctrl_tcp takes {"command": "<menu long command>", "params": "...", "token": "..."} and
//   answers {"response": true, "ok": bool, "data": "...", "token": "..."}; it also pushes every
//   UA event to every connection as {"event": true, "type": "CALL_ESTABLISHED", "id": call-id,
//   "param": ..., ...}. Commands used: dial, accept, hangup, hold, resume, sndcode (DTMF
//   string), answermode (auto|manual|early), reginfo.
// - Received DTMF arrives as CALL_DTMF_START events with the digit in "param".
// - answermode=early answers 183 Session Progress with SDP (early media) and waits for
//   `accept`; answermode=manual sends 180 and waits for `accept` (CALL_INCOMING event).
// - No common codec in an offer: baresip answers 488 Not Acceptable Here (its event
//   CALL_CLOSED says "No audio codecs"; the caller's says "488 Not Acceptable Here").
// - sndfile.so writes each call's audio to snd_path as dump-<YYYY-MM-DD-HH-MM-SS>-dec.wav
//   (what it received, decoded) and -enc.wav (what it sent): one-second names, so one instance
//   must not start two calls within a second. The -dec.wav dump STOPS at the call's first
//   re-INVITE (hold, resume, either side) although RTP keeps being received and played: after a
//   hold, judge baresip's reception by rtpStats() (its end-of-call packet counts), DTMF it
//   reports, or the far end's recording, not by the dump.
// - answermode=early sends no RTP of its own before `accept` (it receives, though); sipp's
//   tests/sipp/uas-early-media.xml is the IMS side that plays early media.
// - aufile.so needs a WAV at the codec's own rate and channel count (opus: 48 kHz stereo), and
//   when it reaches the end of the file the menu HANGS UP the call ("audio error (0,end of
//   file)"): tones must outlast the call (audio.toneFor makes 120 s).
// - It binds its SIP port + 1 for TLS: space instances by 2.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { sleep, waitFor, DOMAIN } = require('./env');
const audio = require('./audio');

const BARESIP = process.env.BARESIP_BIN || '/usr/bin/baresip';
const MODULE_PATH = process.env.BARESIP_MODULES || '/usr/lib/baresip/modules';

const running = new Set();

class Baresip {
  /**
   * @param {string} dir run directory (the instance gets <dir>/<name>/ with config, accounts,
   *   snd/, and <dir>/<name>.log, <dir>/<name>.pid)
   * @param {object} o { name, user, domain (ims.example), sipPort, rtpPorts: [first, last],
   *   ctrlPort, registrar: 'host:port' (Kamailio, UDP), answermode: 'auto'|'manual'|'early',
   *   codecs: ['PCMA/8000/1', ...], tone: WAV path (aufile source; omit for silence),
   *   regint (60; 0: no registration), lifetimeSecs (300: baresip -t, a hard bound),
   *   extraConfig: { key: value }, extraAccount: 'k=v;...' }
   */
  constructor(dir, o) {
    this.o = { domain: DOMAIN, answermode: 'auto', regint: 60, lifetimeSecs: 300, ...o };
    this.name = o.name || o.user;
    this.user = o.user;
    this.dir = path.join(dir, this.name);
    this.sndDir = path.join(this.dir, 'snd');
    this.logFile = path.join(dir, `${this.name}.log`);
    this.pidFile = path.join(dir, `${this.name}.pid`);
    this.eventsFile = path.join(dir, `${this.name}.events`);
    this.events = [];
    this.child = null;
    this.exit = null;
  }

  /** The instance's AOR: sip:<user>@ims.example. */
  get aor() { return `sip:${this.user}@${this.o.domain}`; }

  writeConfig() {
    const o = this.o;
    fs.mkdirSync(this.sndDir, { recursive: true });
    const conf = {
      poll_method: 'epoll',
      call_local_timeout: 60,
      call_max_calls: 4,
      sip_listen: `127.0.0.1:${o.sipPort}`,
      net_interface: '127.0.0.1',
      // no sound card: the player is a bridge to nowhere; the dumps are the recording
      audio_player: 'aubridge,nil',
      audio_source: 'aubridge,nil',
      audio_alert: 'aubridge,nil',
      audio_level: 'no',
      audio_buffer: '20-160',
      rtp_ports: `${o.rtpPorts[0]}-${o.rtpPorts[1]}`,
      rtcp_mux: 'no',
      jitter_buffer_delay: '5-10',
      rtp_stats: 'yes', // packet counts per call in the log at its end (rtpStats())
      statmode_default: 'off', // no per-packet status line on stdout
      module_path: MODULE_PATH,
      module: ['g711.so', 'g722.so', 'opus.so', 'amr.so', 'aufile.so', 'aubridge.so', 'sndfile.so'],
      snd_path: this.sndDir,
      module_tmp: ['account.so'],
      module_app: ['menu.so', 'ctrl_tcp.so'],
      ctrl_tcp_listen: `127.0.0.1:${o.ctrlPort}`,
      ...(o.extraConfig || {}),
    };
    const lines = [];
    for (const [k, v] of Object.entries(conf)) for (const x of [].concat(v)) lines.push(`${k}\t${x}`);
    fs.writeFileSync(path.join(this.dir, 'config'), `${lines.join('\n')}\n`);
    const acc = [`<${this.aor}>`,
      `outbound="sip:${o.registrar};transport=udp"`,
      `regint=${o.regint}`,
      `answermode=${o.answermode}`];
    if (o.codecs) acc.push(`audio_codecs=${o.codecs.join(',')}`);
    if (o.tone) acc.push(`audio_source=aufile,${o.tone}`);
    if (o.extraAccount) acc.push(o.extraAccount);
    fs.writeFileSync(path.join(this.dir, 'accounts'), `${acc.join(';')}\n`);
    fs.writeFileSync(path.join(this.dir, 'contacts'), '');
  }

  /** Starts baresip, connects to ctrl_tcp, waits for registration (unless regint is 0). */
  async start(timeoutMs = 10000) {
    this.writeConfig();
    const log = fs.openSync(this.logFile, 'a');
    this.child = spawn(BARESIP, ['-f', this.dir, '-t', String(this.o.lifetimeSecs)],
      { cwd: this.dir, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    running.add(this);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => { this.exit = { code, signal }; running.delete(this); resolve(this.exit); });
      this.child.on('error', (e) => { this.exit = { code: -1, error: e.message }; running.delete(this); resolve(this.exit); });
    });
    fs.writeFileSync(this.pidFile, `${this.child.pid}\n`);
    await waitFor(async () => {
      if (/init failed|SIP Transport failed/.test(this.log())) {
        await this.stop();
        throw new Error(`baresip ${this.name} could not start (a port of ${JSON.stringify(this.o)} in use?); log:\n${this.log().slice(-2000)}`);
      }
      if (this.exit) throw new Error(`baresip ${this.name} exited at start-up (${JSON.stringify(this.exit)}); log:\n${this.log().slice(-2000)}`);
      return this.connect().then(() => true, () => false);
    }, timeoutMs, `baresip ${this.name} ctrl_tcp on 127.0.0.1:${this.o.ctrlPort}\n${this.log().slice(-2000)}`);
    if (this.o.regint > 0) await this.waitRegistered(timeoutMs);
    return this;
  }

  /**
   * Resolves once the account is registered: a REGISTER_OK event, or (when that came before
   * ctrl_tcp was connected) baresip's "<aor>: {0/UDP/v4} 200 OK" log line.
   */
  async waitRegistered(ms = 10000) {
    const line = `${this.user}@${this.o.domain}: {`;
    await waitFor(() => {
      const log = this.log();
      if (/init failed|SIP Transport failed/.test(log)) throw new Error(`baresip ${this.name} could not start (SIP port ${this.o.sipPort} in use?); log:\n${log.slice(-1500)}`);
      if (this.exit) throw new Error(`baresip ${this.name} exited (${JSON.stringify(this.exit)}); log:\n${log.slice(-1500)}`);
      return this.events.some((e) => e.type === 'REGISTER_OK')
        || log.split('\n').some((l) => l.startsWith(line) && / 200 OK /.test(l));
    }, ms, `baresip ${this.name}: registration of ${this.aor} at ${this.o.registrar}; log tail:\n${this.log().slice(-1500)}`);
  }

  connect() {
    return new Promise((resolve, reject) => {
      const s = net.connect(this.o.ctrlPort, '127.0.0.1');
      s.once('error', reject);
      s.once('connect', () => {
        s.removeListener('error', reject);
        s.on('error', () => {});
        this.sock = s;
        this.pending = new Map();
        let buf = Buffer.alloc(0);
        s.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          for (;;) {
            const colon = buf.indexOf(58); // netstring: <len>:<json>,
            if (colon < 0) return;
            const n = Number(buf.subarray(0, colon).toString('ascii'));
            if (!Number.isInteger(n) || buf.length < colon + 2 + n) return;
            const text = buf.subarray(colon + 1, colon + 1 + n).toString('utf8');
            buf = buf.subarray(colon + 2 + n);
            this.onMessage(text);
          }
        });
        resolve();
      });
    });
  }

  onMessage(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    if (m.event) {
      m.at = Date.now();
      this.events.push(m);
      try { fs.appendFileSync(this.eventsFile, `${new Date(m.at).toISOString()} ${text}\n`); } catch { /* dir gone */ }
    } else if (m.response && this.pending.has(m.token)) {
      this.pending.get(m.token)(m);
      this.pending.delete(m.token);
    }
  }

  /** Sends one ctrl_tcp command; resolves with its data, rejects when baresip says not ok. */
  cmd(command, params = '', ms = 5000) {
    if (!this.sock) return Promise.reject(new Error(`baresip ${this.name}: not connected`));
    Cmd.seq += 1;
    const token = `t${Cmd.seq}`;
    const j = JSON.stringify({ command, params, token });
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { this.pending.delete(token); reject(new Error(`baresip ${this.name}: no answer to ${command} within ${ms} ms`)); }, ms);
      this.pending.set(token, (m) => {
        clearTimeout(t);
        if (m.ok) resolve(m.data || '');
        else reject(new Error(`baresip ${this.name}: ${command} ${params} -> ${m.data}`));
      });
      this.sock.write(`${Buffer.byteLength(j)}:${j},`);
    });
  }

  dial(uri) { return this.cmd('dial', uri); }
  accept() { return this.cmd('accept'); }
  hangup() { return this.cmd('hangup'); }
  hold() { return this.cmd('hold'); }
  resume() { return this.cmd('resume'); }
  /** RFC 4733 digits (0-9 * # A-D) on the current call. */
  sendDigits(digits) { return this.cmd('sndcode', digits); }

  /** Events of type `type` (string or RegExp) since index `from`. */
  eventsOf(type, from = 0) {
    const ok = typeof type === 'string' ? (e) => e.type === type : (e) => type.test(e.type);
    return this.events.slice(from).filter(ok);
  }

  /** Position in the event list, to wait for what happens after it. */
  mark() { return this.events.length; }

  /** Waits for an event of `type` after `from` (pred(e) narrows it); resolves with it. */
  waitEvent(type, { from = 0, ms = 10000, pred = () => true, what } = {}) {
    return waitFor(() => this.eventsOf(type, from).find(pred), ms,
      `${what || type} at baresip ${this.name}; its events: ${this.eventsOf(/.*/, from).map((e) => `${e.type}${e.param ? `(${e.param})` : ''}`).join(' ') || 'none'}`);
  }

  /**
   * Waits for CALL_ESTABLISHED after `from`; fails at once, with the reason, when the call is
   * closed first (e.g. "488 Not Acceptable Here"). Resolves with the event (id = Call-ID).
   */
  async waitEstablished({ from = 0, ms = 15000, what = 'the call established' } = {}) {
    const ev = await waitFor(() => this.eventsOf(/^CALL_(ESTABLISHED|CLOSED)$/, from)[0], ms,
      `${what} at baresip ${this.name}; its events: ${this.eventsOf(/.*/, from).map((e) => e.type).join(' ') || 'none'}`);
    if (ev.type === 'CALL_CLOSED') {
      throw new Error(`${what}: baresip ${this.name}'s call was closed instead: ${ev.param}; its events: ` +
        `${this.eventsOf(/.*/, from).map((e) => `${e.type}${e.param ? `(${e.param})` : ''}`).join(' ')}`);
    }
    return ev;
  }

  /** The digits received as RFC 4733 events (CALL_DTMF_START) since `from`. */
  dtmfReceived(from = 0) { return this.eventsOf('CALL_DTMF_START', from).map((e) => e.param).join(''); }

  /** The decoded-audio dumps (dump-*-dec.wav) in snd_path, oldest first. */
  dumps() {
    try {
      return fs.readdirSync(this.sndDir).filter((f) => /^dump-.*-dec\.wav$/.test(f)).sort().map((f) => path.join(this.sndDir, f));
    } catch { return []; }
  }

  /** The newest decoded-audio dump not in `before` (a dumps() list); null when none. */
  newDump(before = []) {
    const d = this.dumps().filter((f) => !before.includes(f));
    return d.length ? d[d.length - 1] : null;
  }

  /** Measures the newest new dump (audio.analyse); throws a clear error when there is none. */
  analyseDump(before = [], o = {}) {
    const f = this.newDump(before);
    if (!f) throw new Error(`baresip ${this.name} wrote no decoded-audio dump (snd_path ${this.sndDir}); log tail:\n${this.log().slice(-1500)}`);
    return audio.analyse(f, o);
  }

  log() {
    try { return fs.readFileSync(this.logFile, 'utf8'); } catch { return ''; }
  }

  /**
   * The RTP counts baresip logs when a call ends ("audio Transmit: Receive:" block), one per
   * ended call, oldest first: [{ txPackets, rxPackets, txErrors, rxErrors }].
   */
  rtpStats() {
    const out = [];
    const re = /^audio\s+Transmit:\s+Receive:\s*\npackets:\s+(\d+)\s+(\d+)\s*\n(?:.*\n)*?errors:\s+(\d+)\s+(\d+)/gm;
    for (const m of this.log().matchAll(re)) out.push({ txPackets: +m[1], rxPackets: +m[2], txErrors: +m[3], rxErrors: +m[4] });
    return out;
  }

  /** The codecs baresip decoded, in order ("audio: Set audio decoder: PCMA 8000Hz 1ch" lines). */
  decoders() {
    return [...this.log().matchAll(/Set audio decoder: (\S+) /g)].map((m) => m[1]);
  }

  /** SIGTERM by pid, SIGKILL after `ms`; resolves with the exit. */
  async stop(ms = 3000) {
    if (this.sock) { this.sock.destroy(); this.sock = null; }
    if (this.child && !this.exit) {
      try { process.kill(this.child.pid, 'SIGTERM'); } catch { /* gone */ }
      const t = setTimeout(() => { try { process.kill(this.child.pid, 'SIGKILL'); } catch { /* gone */ } }, ms);
      await this.exited;
      clearTimeout(t);
    }
    fs.rmSync(this.pidFile, { force: true });
    return this.exit;
  }
}

const Cmd = { seq: 0 };

/** Stops every instance this process started that is still running (by pid). */
async function stopAll() {
  await Promise.all([...running].map((b) => b.stop().catch(() => {})));
}

/**
 * Port plan inside a test file's block (base = 21000 + 100 * block), instance i in 0..4:
 * SIP base+20+2i (baresip also binds +1 for TLS), ctrl_tcp base+31+i (base+30 is imsgw's
 * media.listen), RTP 6 ports from base+70+6i (three calls' RTP+RTCP pairs; base+70..99).
 */
function portsFor(base, i) {
  if (!Number.isInteger(i) || i < 0 || i > 4) throw new Error(`baresip instance index ${i} out of 0..4`);
  return {
    sipPort: base + 20 + 2 * i,
    ctrlPort: base + 31 + i,
    rtpPorts: [base + 70 + 6 * i, base + 70 + 6 * i + 5],
  };
}

module.exports = { Baresip, stopAll, portsFor, sleep, audio };
