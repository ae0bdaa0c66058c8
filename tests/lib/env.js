'use strict';
// Paths, port blocks and per-file run directories shared by the interop tests.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..');
const LAB = path.join(REPO, 'deploy', 'lab');
const SIPP_DIR = path.join(REPO, 'tests', 'sipp');
const IMSGW_BIN = process.env.IMSGW_BIN || path.join(REPO, 'target', 'debug', 'imsgw');
const DOMAIN = 'ims.example';

/**
 * A block of 100 ports for one test file: base = 21000 + 100 * block (below the ephemeral range
 * 32768+, away from the lab defaults 5060-5099 and 8080-8090). Every file uses its own block so a
 * leftover of one file can never collide with another.
 */
function ports(block) {
  if (!Number.isInteger(block) || block < 1 || block > 99) throw new Error(`bad port block ${block}`);
  const base = 21000 + 100 * block;
  return {
    base,
    http: base, // imsgw HTTP/WebSocket
    metrics: base + 1, // imsgw metrics.listen (GET /metrics)
    sip: base + 2, // imsgw UDP+TCP toward the IMS
    sipTls: base + 3, // imsgw TLS toward the IMS
    ims: base + 10, // Kamailio UDP+TCP
    imsTls: base + 11, // Kamailio TLS
    sipp: (i) => base + 20 + i, // sipp -p, i in 0..19
    media: (i) => base + 40 + 6 * i, // sipp -mp, i in 0..9 (sipp uses a few ports above it)
  };
}

/** A fresh run directory for one test file, kept when something failed or KEEP_RUNDIR=1. */
function rundir(name) {
  const parent = path.join(os.tmpdir(), 'imsgw-interop');
  fs.mkdirSync(parent, { recursive: true });
  return fs.mkdtempSync(path.join(parent, `${name}-`));
}

function removeRundir(dir, failed) {
  if (failed || process.env.KEEP_RUNDIR === '1') {
    console.log(`logs kept in ${dir}`);
    return;
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

let seq = 0;
/** A user name no other test (or earlier run) used: Kamailio keeps bindings of dead flows. */
function uniqueUser(prefix) {
  seq += 1;
  return `${prefix}-${process.pid.toString(36)}${Date.now().toString(36).slice(-5)}${seq}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `cond()` is truthy (polled), rejects with `what` after `ms`. */
async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Rejects after `ms` unless `p` settles first. */
function within(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

module.exports = { REPO, LAB, SIPP_DIR, IMSGW_BIN, DOMAIN, ports, rundir, removeRundir, uniqueUser, sleep, waitFor, within };
