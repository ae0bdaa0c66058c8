'use strict';
// Assertions shared by the UDP, TCP and TLS variants of "register through imsgw" (RFC 5626
// §5.1, RFC 3327) and "IMS requests reach the WebSocket by the Path" (RFC 5626 §5.3).
const assert = require('node:assert/strict');
const { headerValues } = require('./jssip');
const sippLib = require('./sipp');
const { within } = require('./env');

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The Contact JsSIP put in its last REGISTER (from the frames it sent). */
function registeredContact(ua) {
  const reg = ua.socket.frames.filter((f) => f.dir === 'out' && f.text.startsWith('REGISTER ')).pop();
  assert.ok(reg, `${ua.user} sent no REGISTER`);
  const m = /^Contact: <([^>]+)>(.*)$/m.exec(reg.text);
  assert.ok(m, `no Contact in JsSIP's REGISTER:\n${reg.text}`);
  const inst = /\+sip\.instance="<(urn:uuid:[^>]+)>"/.exec(m[2]);
  return { uri: m[1], params: m[2], instance: inst && inst[1] };
}

/** Regex of the Path imsgw must add: flow token user part, its IMS-side address, lr, ob. */
function pathRegex(L) {
  return new RegExp(`^<sip:([A-Za-z0-9_~.!*'()%-]+)@${esc(L.imsgwAddr())};transport=${L.transport};lr;ob>$`);
}

/**
 * The 200 to JsSIP's REGISTER echoes our Path, and Kamailio's location table holds exactly one
 * binding for the user with JsSIP's Contact, instance, reg-id and our Path.
 * Returns the flow token.
 */
async function assertRegisteredWithPath(L, ua) {
  const res = ua.registerResponse;
  assert.ok(res, `${ua.user}: no 200 to REGISTER`);
  assert.equal(res.status_code, 200);
  const re = pathRegex(L);
  const echoed = headerValues(res, 'Path');
  assert.equal(echoed.length, 1, `200 OK should echo one Path (registrar path_mode=1), got ${JSON.stringify(echoed)}`);
  assert.match(echoed[0], re, 'Path echoed in the 200 OK');

  const contact = registeredContact(ua);
  const dump = await L.kam.ulDumpText();
  const bindings = await L.kam.bindings(ua.user);
  assert.equal(bindings.length, 1, `ul.dump should hold exactly one binding for ${ua.user}:\n${dump}`);
  const b = bindings[0];
  assert.match(b.Path || '', re, `ul.dump Path of ${ua.user}:\n${dump}`);
  assert.equal(b.Address, contact.uri, 'the binding is the Contact JsSIP registered');
  assert.equal(b.Instance, `<${contact.instance}>`, 'the binding keeps JsSIP\'s +sip.instance');
  assert.equal(b['Reg-Id'], '1', 'the binding keeps reg-id (RFC 5626 outbound registration)');
  const token = re.exec(b.Path)[1];
  assert.ok(token.length >= 16, `flow token looks too short to carry an HMAC: ${token}`);
  return token;
}

/**
 * sipp (IMS side) calls the user through Kamailio; JsSIP answers; ACK and BYE reach it.
 * Asserts what JsSIP saw: Request-URI = its Contact, imsgw popped the Path Route, imsgw's
 * double Record-Route (RFC 5658) on top of Kamailio's; then sipp's BYE gets 200 (exit 0).
 */
async function assertIncomingCall(L, ua) {
  const contact = registeredContact(ua);
  const n = ua.incomingSessions.length;
  const r = await L.sipp({ scenario: 'uac-invite.xml', service: ua.user });
  const s = ua.incomingSessions[n];
  assert.ok(s, `JsSIP ${ua.user} saw no INVITE; ${sippLib.describe(r)}\nimsgw log tail:\n${L.gw.log().slice(-3000)}`);
  const req = s.request;
  assert.equal(req.method, 'INVITE');
  assert.equal(req.ruri.toString(), contact.uri, 'INVITE Request-URI is the registered Contact');
  assert.deepEqual(headerValues(req, 'Route'), [], 'imsgw removes its own Path entry from Route (RFC 3261 §16.4)');
  const rr = headerValues(req, 'Record-Route');
  const gw = L.imsgwAddr().replace(/\./g, '\\.');
  // Kamailio record-routes once, or twice (r2=on) when it receives on UDP and sends on TCP/TLS
  const kamRR = L.transport === 'udp' ? 1 : 2;
  assert.equal(rr.length, 2 + kamRR, `Record-Route: imsgw twice over Kamailio's ${kamRR}, got ${JSON.stringify(rr)}`);
  assert.match(rr[0], new RegExp(`^<sip:[A-Za-z0-9_~.!*'()%-]+@${gw};transport=ws;lr;ob>$`), 'WebSocket-facing Record-Route with a flow token');
  assert.match(rr[1], new RegExp(`^<sip:${gw};transport=${L.transport};lr>$`), 'IMS-facing Record-Route of imsgw');
  for (const k of rr.slice(2)) {
    assert.match(k, new RegExp(`^<sip:127\\.0\\.0\\.1:(${L.p.ims}|${L.p.imsTls})[;>]`), 'the rest is Kamailio\'s Record-Route');
  }
  assert.match(req.getHeader('Via'), /^SIP\/2\.0\/WS /, 'top Via toward the client is imsgw\'s WS Via (RFC 7118 §5.2)');
  assert.equal(r.code, 0, `sipp call failed: ${sippLib.describe(r)}`);
  const [end, detail] = await within(s.done, 10000, 'the end of the call at JsSIP');
  const names = s.events.map(([e]) => e);
  assert.ok(names.includes('confirmed'), `JsSIP never got the ACK (events ${names})`);
  assert.equal(end, 'ended', `call should end normally, got ${end} ${detail && detail.cause}`);
  assert.equal(detail.originator, 'remote', 'the BYE came from sipp');
  assert.equal(detail.cause, 'Terminated');
  // the ACK and BYE JsSIP received came down the same WebSocket, with imsgw's Route popped
  const inBye = ua.socket.frames.filter((f) => f.dir === 'in' && f.text.startsWith('BYE ')).pop();
  assert.ok(inBye, 'BYE arrived on the WebSocket');
  assert.doesNotMatch(inBye.text, /^Route:/m, `imsgw pops its Record-Route entries from the BYE's Route:\n${inBye.text}`);
  assert.ok(sippLib.responses(r).some((x) => x.status === 200 && x.cseq === '2 BYE'), 'sipp saw 200 to its BYE');
  return { request: req, recordRoute: rr, sipp: r };
}

/** sipp sends MESSAGE through Kamailio; JsSIP gets it (body, no Route left), sipp gets 200. */
async function assertIncomingMessage(L, ua) {
  const n = ua.messages.length;
  const r = await L.sipp({ scenario: 'uac-message.xml', service: ua.user, timeoutSecs: 10 });
  const m = ua.messages[n];
  assert.ok(m, `JsSIP ${ua.user} got no MESSAGE; ${sippLib.describe(r)}\nimsgw log tail:\n${L.gw.log().slice(-3000)}`);
  assert.match(m.body, /^hello from sipp \d+/);
  assert.equal(m.from, 'sip:caller@ims.example');
  assert.deepEqual(headerValues(m.request, 'Route'), [], 'imsgw removes its own Path entry from Route');
  assert.equal(r.code, 0, `sipp MESSAGE failed: ${sippLib.describe(r)}`);
  assert.ok(sippLib.responses(r).some((x) => x.status === 200 && x.cseq === '1 MESSAGE'), 'sipp saw 200 to its MESSAGE');
  return m;
}

module.exports = { registeredContact, pathRegex, assertRegisteredWithPath, assertIncomingCall, assertIncomingMessage };
