import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bareUri, completeAddress } from '../src/address';
import { parseConfig } from '../src/config';
import { base64UrlEncode, decodeJwtPayload } from '../src/jwt';
import { randomUuid, randomVerifier, s256Challenge } from '../src/pkce';
import { backoffDelayMs, refreshDelayMs } from '../src/timing';
import { deliveryInWords, statusInWords } from '../src/words';
import { authorizeUrl, parseTokens, readCallback } from '../src/oauth';

const D = 'ims.example';
const uri = (s: string) => {
  const r = completeAddress(s, D);
  return r.ok ? r.uri : `ERR ${r.reason}`;
};

test('address: a bare name gets the home domain', () => {
  assert.equal(uri('bob'), 'sip:bob@ims.example');
  assert.equal(uri('  alice  '), 'sip:alice@ims.example');
});

test('address: name@domain and SIP URIs are kept', () => {
  assert.equal(uri('bob@other.example'), 'sip:bob@other.example');
  assert.equal(uri('sip:bob@ims.example'), 'sip:bob@ims.example');
  assert.equal(uri('SIP:bob@ims.example'), 'sip:bob@ims.example');
  assert.equal(uri('sips:bob@ims.example:5061'), 'sips:bob@ims.example:5061');
  assert.equal(uri('sip:bob@ims.example;transport=ws'), 'sip:bob@ims.example;transport=ws');
});

test('address: numbers lose visual separators (RFC 3966 §5.1.1)', () => {
  assert.equal(uri('+1 (555) 123-4567'), 'sip:+15551234567@ims.example');
  assert.equal(uri('5551234'), 'sip:5551234@ims.example');
  assert.equal(uri('tel:+44.20.7946.0000'), 'sip:+442079460000@ims.example');
});

test('address: nonsense is refused with a reason', () => {
  for (const bad of ['', '   ', 'bob smith', 'sip:', 'sip:@x', 'sip:bob', 'bob@', 'bob@bad domain', 'tel:abc']) {
    const r = completeAddress(bad, D);
    assert.equal(r.ok, false, `"${bad}" must be refused`);
  }
});

test('bareUri drops parameters and headers', () => {
  assert.equal(bareUri('sip:bob@ims.example;transport=ws'), 'sip:bob@ims.example');
  assert.equal(bareUri('sip:bob@ims.example?subject=x'), 'sip:bob@ims.example');
});

test('jwt: the payload is decoded (base64url, UTF-8)', () => {
  const enc = (o: object) => base64UrlEncode(new TextEncoder().encode(JSON.stringify(o)));
  const tok = `${enc({ alg: 'ES256' })}.${enc({ impu: 'sip:zoë@ims.example', exp: 1 })}.sig`;
  assert.deepEqual(decodeJwtPayload(tok), { impu: 'sip:zoë@ims.example', exp: 1 });
  assert.throws(() => decodeJwtPayload('abc'));
  assert.throws(() => decodeJwtPayload(`a.${enc([1])}.c`));
});

test('pkce: RFC 7636 appendix B example', async () => {
  assert.equal(
    await s256Challenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'),
    'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
  );
  const v = randomVerifier();
  assert.match(v, /^[A-Za-z0-9\-_]{43}$/);
  assert.notEqual(v, randomVerifier());
});

test('instance id is a v4 UUID', () => {
  assert.match(randomUuid(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('refresh at 80% of the life, at least 5 s before expiry, never under 1 s', () => {
  assert.equal(refreshDelayMs(600), 480_000);
  assert.equal(refreshDelayMs(20), 15_000);
  assert.equal(refreshDelayMs(10), 5_000);
  assert.equal(refreshDelayMs(3), 1_000);
  assert.equal(refreshDelayMs(NaN), 1_000);
});

test('reconnect back-off follows RFC 5626 §4.5: 50-100% of min(max, base*2^n)', () => {
  assert.equal(backoffDelayMs(1, 2, 30, () => 0), 1_000);
  assert.equal(backoffDelayMs(1, 2, 30, () => 1), 2_000);
  assert.equal(backoffDelayMs(3, 2, 30, () => 1), 8_000);
  assert.equal(backoffDelayMs(10, 2, 30, () => 1), 30_000);
  assert.equal(backoffDelayMs(10, 2, 30, () => 0), 15_000);
  assert.equal(backoffDelayMs(1000, 2, 30, () => 0.5), 22_500);
});

test('SIP outcomes in words', () => {
  assert.equal(deliveryInWords(200), 'Delivered');
  assert.equal(deliveryInWords(202), 'Delivered');
  assert.equal(deliveryInWords(404), 'Not delivered: 404 no such person');
  assert.equal(deliveryInWords(null, 'Request Timeout'), 'Not delivered: no answer from the network in time');
  assert.equal(statusInWords(499), 'refused');
  assert.equal(statusInWords(503), 'the IMS network is unreachable');
});

const cfg = parseConfig({
  websocket_url: 'ws://127.0.0.1:8080/sip',
  sip_domain: 'ims.example',
  client_id: 'wic',
  issuer: 'http://127.0.0.1:8080',
  authorization_endpoint: 'http://127.0.0.1:8080/oauth/authorize',
  token_endpoint: 'http://127.0.0.1:8080/oauth/token',
  revocation_endpoint: 'http://127.0.0.1:8080/oauth/revoke',
  logout_endpoint: 'http://127.0.0.1:8080/auth/logout',
  scope: 'sip',
  redirect_uri: 'http://127.0.0.1:8080/',
});

test('config: a missing key is named', () => {
  assert.throws(() => parseConfig({ ...cfg, token_endpoint: '' }), /token_endpoint/);
  assert.throws(() => parseConfig(null));
});

test('config: sign_in is token unless the gateway says code_in_register; me_endpoint defaults under the issuer', () => {
  assert.equal(cfg.sign_in, 'token');
  assert.equal(cfg.me_endpoint, 'http://127.0.0.1:8080/auth/me');
  const c = parseConfig({ ...cfg, sign_in: 'code_in_register', me_endpoint: 'http://gw/auth/me' });
  assert.equal(c.sign_in, 'code_in_register');
  assert.equal(c.me_endpoint, 'http://gw/auth/me');
  assert.equal(parseConfig({ ...cfg, sign_in: 'something else' }).sign_in, 'token');
});

test('authorize URL carries PKCE S256 and every RFC 6749 §4.1.1 parameter', () => {
  const u = new URL(authorizeUrl(cfg, 'st', 'ch'));
  assert.equal(u.origin + u.pathname, 'http://127.0.0.1:8080/oauth/authorize');
  assert.deepEqual(Object.fromEntries(u.searchParams), {
    response_type: 'code',
    client_id: 'wic',
    redirect_uri: 'http://127.0.0.1:8080/',
    state: 'st',
    code_challenge: 'ch',
    code_challenge_method: 'S256',
    scope: 'sip',
  });
});

function store(v: object | null) {
  const m = new Map<string, string>();
  if (v) m.set('wic.oauth.pending', JSON.stringify(v));
  return { getItem: (k: string) => m.get(k) ?? null, removeItem: (k: string) => void m.delete(k), m };
}

test('callback: matching state and iss give the code; the pending entry is removed', () => {
  const s = store({ state: 'S', verifier: 'V' });
  const r = readCallback('?code=C&state=S&iss=http%3A%2F%2F127.0.0.1%3A8080', cfg, s);
  assert.deepEqual(r, { kind: 'code', code: 'C', verifier: 'V' });
  assert.equal(s.m.size, 0);
});

test('callback: wrong state, wrong iss (RFC 9207), or no pending request are refused', () => {
  assert.equal(readCallback('?code=C&state=X', cfg, store({ state: 'S', verifier: 'V' })).kind, 'error');
  assert.equal(readCallback('?code=C&state=S&iss=https://evil', cfg, store({ state: 'S', verifier: 'V' })).kind, 'error');
  assert.equal(readCallback('?code=C&state=S', cfg, store(null)).kind, 'error');
  assert.equal(readCallback('', cfg, store(null)).kind, 'none');
});

test('callback: an error response is shown in words', () => {
  const r = readCallback('?error=access_denied&error_description=No+IMS+identity&state=S', cfg, store({ state: 'S', verifier: 'V' }));
  assert.deepEqual(r, { kind: 'error', message: 'Sign-in was cancelled or refused: No IMS identity' });
});

test('token response: refresh token optional, expires_in defaulted', () => {
  assert.deepEqual(parseTokens({ access_token: 'a', refresh_token: 'r', expires_in: 600, scope: 'sip' }), {
    access_token: 'a', refresh_token: 'r', expires_in: 600, scope: 'sip',
  });
  assert.equal(parseTokens({ access_token: 'a' }).refresh_token, null);
  assert.throws(() => parseTokens({}));
});

import { callEndInWords, callFailureInWords, microphoneInWords, warningText } from '../src/words';
import { audioProcessingWanted, levelOf, micConstraints, peakOf } from '../src/media';

test('calls in words: the response code and phrase, with the Warning text', () => {
  assert.equal(callFailureInWords({ code: 486, reason: 'Busy Here', warning: '', cause: 'Busy' }), 'The call failed: Busy here (486).');
  assert.equal(
    callFailureInWords({ code: 488, reason: 'Not Acceptable Here', warning: 'no common codec', cause: 'Incompatible SDP' }),
    'The call failed: Not acceptable here (488): no common codec.',
  );
  assert.match(callFailureInWords({ code: 488, reason: '', warning: '', cause: '' }), /Not acceptable here \(488\): no common codec/);
  assert.match(callFailureInWords({ code: null, reason: '', warning: '', cause: 'Connection Error' }), /^Network lost/);
  assert.match(callFailureInWords({ code: null, reason: '', warning: '', cause: 'Media Lost' }), /^Network lost/);
  assert.match(callFailureInWords({ code: null, reason: '', warning: '', cause: 'WebRTC Error' }), /no common codec/);
  assert.match(callFailureInWords({ code: null, reason: 'NotAllowedError', warning: '', cause: 'User Denied Media Access' }), /permission was denied/);
  assert.match(microphoneInWords('NotFoundError'), /No microphone/);
  assert.deepEqual(callEndInWords({ peer: 'bob', outcome: 'completed', secs: 75, failure: null }), { error: '', notice: 'The call with bob ended (01:15).' });
  assert.equal(callEndInWords({ peer: 'bob', outcome: 'failed', secs: 0, failure: { code: 603, reason: 'Decline', warning: '', cause: 'Rejected' } }).error,
    'The call failed: Decline (603).');
});

test('Warning header text (RFC 3261 §20.43)', () => {
  assert.equal(warningText('399 imsgw "no common codec"'), 'no common codec');
  assert.equal(warningText('301 gw.example:5060 "say \\"hi\\""'), 'say "hi"');
  assert.equal(warningText('garbage'), 'garbage');
  assert.equal(warningText(''), '');
});

test('media: ?audio_processing=off turns processing off; levels and peak', () => {
  const store = new Map<string, string>();
  const st = { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => void store.set(k, v) };
  assert.equal(audioProcessingWanted('', st), true);
  assert.equal(audioProcessingWanted('?x=1', null), true);
  assert.equal(audioProcessingWanted('?audio_processing=off', st), false);
  assert.equal(audioProcessingWanted('?code=abc&state=x', st), false, 'kept across the sign-in redirect');
  assert.equal(audioProcessingWanted('?audio_processing=on', st), true);
  assert.equal(audioProcessingWanted('', st), true);
  assert.deepEqual(micConstraints(false), { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false }, video: false });
  assert.deepEqual(micConstraints(true), { audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }, video: false });
  const sine = new Float32Array(4800).map((_, i) => 0.5 * Math.sin((2 * Math.PI * 1000 * i) / 48000));
  assert.ok(Math.abs(levelOf(sine) - 0.5) < 0.01, String(levelOf(sine)));
  assert.equal(levelOf(new Float32Array(100)), 0);
  const bins = new Float32Array(4096).fill(-120);
  bins[171] = -10; // 171 * 48000 / 8192 = 1002 Hz
  assert.ok(Math.abs(peakOf(bins, 48000, 8192) - 1002) < 1);
  assert.equal(peakOf(new Float32Array(4096).fill(-Infinity), 48000, 8192), 0);
});
