'use strict';
// RFC 8898 helpers for the Bearer-token tests: raw REGISTER/MESSAGE with chosen credentials,
// the exact challenge imsgw must send, and what Kamailio (-A LOG_AUTH) logged per Call-ID.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { DOMAIN, sleep } = require('./env');

/**
 * A REGISTER for sip:<user>@<domain> in JsSIP's shape (Supported: path, outbound; ws Contact).
 * o: { auth: 'Bearer x' | null, authHeader: 'Authorization', expires (header; null: none),
 *      contactExpires (param; null: none), callId, cseq }
 */
function buildRegister(c, user, o = {}) {
  const callId = o.callId || crypto.randomBytes(8).toString('hex');
  const cexp = o.contactExpires != null ? `;expires=${o.contactExpires}` : '';
  const extra = [`Contact: <sip:${user}@${c.host};transport=ws>${cexp}`, 'Supported: path, outbound'];
  if (o.expires != null) extra.push(`Expires: ${o.expires}`);
  if (o.auth) extra.push(`${o.authHeader || 'Authorization'}: ${o.auth}`);
  extra.push(...(o.extra || []));
  const text = c.build('REGISTER', `sip:${DOMAIN}`, {
    user, cseq: `${o.cseq || 1} REGISTER`, over: { 'Call-ID': callId }, extra,
  });
  return { text, callId };
}

/** Sends a REGISTER (see buildRegister); resolves { res, callId, text }. */
async function register(c, user, o = {}) {
  const { text, callId } = buildRegister(c, user, o);
  const res = await c.request(text, o.ms || 6000);
  return { res, callId, text };
}

/**
 * A MESSAGE from sip:<from>@domain to `to`; o: { auth, extra, callId, headers (over) }.
 */
async function message(c, from, to, o = {}) {
  const callId = o.callId || crypto.randomBytes(8).toString('hex');
  const extra = ['Content-Type: text/plain'];
  if (o.auth) extra.push(`${o.authHeader || 'Authorization'}: ${o.auth}`);
  extra.push(...(o.extra || []));
  const text = c.build('MESSAGE', to, {
    user: from, over: { 'Call-ID': callId, To: `<${to}>`, ...(o.over || {}) }, body: o.body || 'hello', extra,
  });
  const res = await c.request(text, o.ms || 6000);
  return { res, callId, text };
}

/** The exact RFC 8898 §2.2 challenge value imsgw must send. */
function challengeValue(gw, error) {
  return `Bearer realm="${DOMAIN}", authz_server="${gw.issuer}", scope="sip"${error ? `, error="${error}"` : ''}`;
}

/**
 * Asserts a refusal: status, exactly one challenge header with the exact value (or none when
 * `error === false`), the other challenge header absent, and a `Warning: 399 imsgw "..."`
 * when `warning` is a RegExp.
 */
function assertRefusal(gw, res, { code, header = 'WWW-Authenticate', error, warning, what = '' }) {
  const dump = `${what}\n${res.start}\n${res.headers.map(([k, v]) => `${k}: ${v}`).join('\n')}`;
  assert.equal(res.status, code, `status: ${dump}`);
  const other = header === 'WWW-Authenticate' ? 'Proxy-Authenticate' : 'WWW-Authenticate';
  assert.deepEqual(res.get(other), [], `no ${other}: ${dump}`);
  if (error === false) {
    assert.deepEqual(res.get(header), [], `no ${header}: ${dump}`);
  } else {
    assert.deepEqual(res.get(header), [challengeValue(gw, error)], `${header}: ${dump}`);
  }
  if (warning) {
    const w = res.get('Warning');
    assert.equal(w.length, 1, `one Warning: ${dump}`);
    assert.match(w[0], /^399 imsgw "[^"]+"$/, `Warning syntax: ${dump}`);
    assert.match(w[0], warning, `Warning reason: ${dump}`);
  }
}

/** Kamailio's LOG_AUTH lines ("IMSAUTH method=... ci=[...] ...") for one Call-ID. */
function kamAuthLines(kam, callId) {
  return kam.log().split('\n').filter((l) => l.includes('IMSAUTH') && l.includes(`ci=[${callId}]`));
}

/** Every Kamailio log line naming a Call-ID (its log_prefix carries $ci on every line). */
function kamLines(kam, callId) {
  return kam.log().split('\n').filter((l) => l.includes(callId));
}

/**
 * Every message Kamailio (-A LOG_MSG) received for a Call-ID, decoded and parsed
 * ({ dir: 'req'|'rpl', src, text, start, headers, get, method, status }).
 */
function kamMessages(kam, callId) {
  const { parseSip } = require('./wsclient');
  const out = [];
  for (const l of kam.log().split('\n')) {
    const m = /IMSMSG dir=(req|rpl) ci=\[([^\]]*)\] src=(\S+) b64=(\S+)/.exec(l);
    if (!m || m[2] !== callId) continue;
    const text = Buffer.from(m[4], 'base64').toString('utf8');
    out.push({ dir: m[1], src: m[3], text, ...parseSip(text) });
  }
  return out;
}

/** Waits until Kamailio logged a received request of `method` for the Call-ID; returns it. */
async function waitKamRequest(L, callId, method, ms = 3000) {
  const end = Date.now() + ms;
  for (;;) {
    const hit = kamMessages(L.kam, callId).find((m) => m.dir === 'req' && m.method === method);
    if (hit) return hit;
    if (Date.now() > end) throw new Error(`Kamailio received no ${method} for Call-ID ${callId}; log tail:\n${L.kam.log().slice(-2000)}`);
    await sleep(25);
  }
}

/** One field of an IMSAUTH line: auth, auth_last, pai, expires, n_auth, proxy_auth, contact. */
function field(line, name) {
  const m = new RegExp(` ${name}=(\\[([^\\]]*)\\]|(\\S+))`).exec(line);
  return m ? (m[2] !== undefined ? m[2] : m[3]) : undefined;
}

/** Asserts Kamailio never saw the Call-ID (after a short settle) and holds no binding for user. */
async function assertNothingUpstream(L, callId, user) {
  await sleep(150);
  assert.deepEqual(kamLines(L.kam, callId), [], `Kamailio received something for Call-ID ${callId}`);
  if (user) {
    const b = await L.kam.bindings(user);
    assert.deepEqual(b, [], `Kamailio holds a binding for ${user}:\n${await L.kam.ulDumpText()}`);
  }
}

/** Waits until Kamailio logged an IMSAUTH line for the Call-ID; returns the lines. */
async function waitKamAuth(L, callId, ms = 3000) {
  const end = Date.now() + ms;
  for (;;) {
    const l = kamAuthLines(L.kam, callId);
    if (l.length) return l;
    if (Date.now() > end) throw new Error(`Kamailio logged no IMSAUTH line for Call-ID ${callId}; log tail:\n${L.kam.log().slice(-2000)}`);
    await sleep(25);
  }
}

/** The numeric Expires of user's only live binding in ul.dump (null if none). */
async function bindingExpires(L, user) {
  const b = (await L.kam.bindings(user)).filter((x) => /^\d+$/.test(x.Expires || ''));
  return b.length ? Number(b[0].Expires) : null;
}

const now = () => Math.floor(Date.now() / 1000);

module.exports = {
  buildRegister, register, message, challengeValue, assertRefusal, kamAuthLines, kamLines, field,
  kamMessages, waitKamRequest,
  assertNothingUpstream, waitKamAuth, bindingExpires, now,
};
