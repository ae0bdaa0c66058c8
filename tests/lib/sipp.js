'use strict';
// sipp on the IMS side (UDP/TCP toward Kamailio): every run bounded by -m, -timeout and
// -timeout_error; returns the exit code, the screen output and the traced messages.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { SIPP_DIR } = require('./env');

const running = new Set();

/**
 * Starts sipp; returns { pid, done } where done resolves to
 * { code, out, messages, errors, elapsedMs }.
 * @param {object} o { dir, name, scenario ('uac-invite.xml'), service, port, mediaPort, target
 *   ('127.0.0.1:5070'), transport ('u1'|'t1'), m (1), timeoutSecs (20), keys {k: v}, args [],
 *   cwd (where relative files of the scenario, e.g. an rtp_stream audio file, are found) }
 */
function start(o) {
  const name = o.name || path.basename(o.scenario, '.xml');
  const msgFile = path.join(o.dir, `sipp-${name}.msg`);
  const errFile = path.join(o.dir, `sipp-${name}.err`);
  const outFile = path.join(o.dir, `sipp-${name}.out`);
  for (const f of [msgFile, errFile]) fs.rmSync(f, { force: true });
  const args = ['-sf', path.join(SIPP_DIR, o.scenario), '-p', String(o.port),
    '-m', String(o.m || 1), '-timeout', String(o.timeoutSecs || 20), '-timeout_error', '-nostdin',
    '-trace_msg', '-message_file', msgFile, '-trace_err', '-error_file', errFile];
  if (o.transport) args.push('-t', o.transport);
  if (o.service) args.push('-s', o.service);
  if (o.mediaPort) args.push('-mp', String(o.mediaPort));
  for (const [k, v] of Object.entries(o.keys || {})) args.push('-key', k, String(v));
  args.push(...(o.args || []));
  if (o.target) args.push(o.target);
  const t0 = Date.now();
  const child = spawn('sipp', args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: o.cwd });
  running.add(child);
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const done = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      running.delete(child);
      fs.writeFileSync(outFile, `sipp ${args.join(' ')}\n${out}`);
      const read = (f) => { try { return fs.readFileSync(f, 'utf8'); } catch { return ''; } };
      resolve({ code, signal, out, messages: read(msgFile), errors: read(errFile), elapsedMs: Date.now() - t0, args });
    });
  });
  return { pid: child.pid, done };
}

/** Runs sipp to its end. */
function run(o) { return start(o).done; }

/** Kills every sipp this process started and that is still running (by pid). */
function killAll() {
  for (const c of running) {
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

/**
 * The messages of a sipp -trace_msg file: [{ dir: 'sent'|'received', text }].
 */
function traced(messagesText) {
  const out = [];
  for (const block of messagesText.split(/^-{20,} .*$/m)) {
    const m = /^\s*\S+ message (sent|received)[^\n]*\n\n([\s\S]*)$/.exec(block);
    if (m) out.push({ dir: m[1], text: m[2].replace(/\n+$/, '\n') });
  }
  return out;
}

/** Received responses: [{ status, cseq, text }]. */
function responses(r) {
  return traced(r.messages).filter((m) => m.dir === 'received' && m.text.startsWith('SIP/2.0 ')).map((m) => ({
    status: Number(m.text.slice(8, 11)),
    cseq: (/^CSeq:\s*(.+)$/mi.exec(m.text) || [])[1],
    text: m.text,
  }));
}

/** A short description for assertion messages. */
function describe(r) {
  return `sipp exit ${r.code}${r.signal ? ` (${r.signal})` : ''} after ${r.elapsedMs} ms\n` +
    `--- errors ---\n${r.errors.slice(-2500)}\n--- messages (tail) ---\n${r.messages.slice(-4000)}\n--- output (tail) ---\n${r.out.slice(-1500)}`;
}

module.exports = { start, run, killAll, describe, traced, responses };
