/**
 * The WIC (WebRTC IMS Client, TS 24.371): signs the person in at the WAF (OAuth 2.0 code flow
 * with PKCE), registers to the IMS through the gateway with the access token (RFC 8898),
 * refreshes the token before it expires, survives connection loss, sends and receives
 * messages, and makes and takes audio calls (WebRTC toward the gateway's eIMS-AGW).
 *
 * Owns: the driver of the state machine (machine.ts): it turns sign-in, SIP and page events into
 * machine events, carries out the machine's effects, and draws the page from its state. Tokens
 * and the JsSIP objects live here; which state the WIC is in lives in the machine only.
 */
import { parseConfig, type WicConfig } from './config';
import { completeAddress } from './address';
import { decodeJwtPayload } from './jwt';
import {
  beginSignIn,
  endWafSession,
  exchangeCode,
  readCallback,
  refresh,
  revoke,
  TokenError,
  type Tokens,
} from './oauth';
import type { RTCSession } from 'jssip/lib/RTCSession';
import { Call, type CallEvents } from './call';
import { bearer, codeCredential, Phone, type RegState } from './phone';
import { PopKey } from './pop';
import { refreshDelayMs, registerRetryDelayMs } from './timing';
import { callEndInWords, deliveryInWords, statusInWords } from './words';
import { addIncoming, addOutgoing, clock, hideRinging, setText, showCall, showLevel, showRegState, showRinging, showSignedIn, typeIntoAddress, ui } from './ui';
import { callOf, initial, regOf, step, type CallEnd, type Effect, type Event, type Machine } from './machine';
import { audioProcessingWanted, CallAudio, installTestHooks, micConstraints, tabStorage } from './media';

/** The signed-in person. Tokens live here, in memory, and nowhere else. */
interface Session {
  impu: string;
  access: string;
  refresh: string | null;
  /** ms since epoch. */
  expiresAt: number;
  refreshTimer: ReturnType<typeof setTimeout> | null;
  refreshing: boolean;
  refreshFailures: number;
  refreshes: number;
  phone: Phone;
  /** Signed in with `code_in_register`: the gateway holds the tokens for one connection. */
  codeMode: boolean;
  /** The key the tokens are bound to (`wwsf.proof_of_possession`). */
  pop?: PopKey;
}

let cfg: WicConfig | null = null;
let session: Session | null = null;
/** The one state of the WIC (session and call); changed by dispatch() only. */
let machine: Machine = initial();
/** What is wrong right now, by source; the page shows the most pressing. */
let authProblem = '';
let connProblem = '';
let regProblem = '';
let regRetryTimer: ReturnType<typeof setTimeout> | null = null;
let regFailures = 0;
let busy = false;
/** The calls JsSIP still holds, by our id: the current one and any being turned down. */
const calls = new Map<number, Call>();
let nextCallId = 1;
let callProblem = '';
let dtmfSent = '';
let callTicker: ReturnType<typeof setInterval> | null = null;
/** `?audio_processing=off`: no echo cancellation, noise suppression or AGC (tests' fake tone). */
const processing = audioProcessingWanted(location.search, tabStorage());
const audio = new CallAudio(ui.remoteAudio, (out, inn) => {
  showLevel(ui.levelOut, out);
  showLevel(ui.levelIn, inn);
});

const MSG = {
  refused: 'Your sign-in has expired or was refused. Please sign in again.',
  notAllowed: 'This identity is not allowed to use this service.',
  ended: 'Your sign-in has ended. Please sign in again.',
  noConfig: 'This page could not load its settings from the server. Reload the page to try again.',
  notRegistered: 'You are not registered right now, so calls cannot be made. Try again when the status shows Registered.',
};

installTestHooks(audio, () => machine);

void init();

async function init(): Promise<void> {
  wireUi();
  showRegState('unregistered');
  try {
    const res = await fetch('/wic/config.json', { cache: 'no-store', credentials: 'same-origin' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    cfg = parseConfig(await res.json());
  } catch {
    authProblem = MSG.noConfig;
    ui.signIn.disabled = true;
    showSignedIn(null);
    render();
    return;
  }
  const cb = readCallback(location.search, cfg, sessionStorage);
  if (cb.kind !== 'none') cleanUrl();
  if (cb.kind === 'error') {
    authProblem = cb.message;
  } else if (cb.kind === 'code') {
    notice('Signing in…');
    ui.signIn.hidden = true;
    try {
      if (cfg.sign_in === 'code_in_register') {
        startWithCode(await whoAmI(cfg), cb.code, cb.verifier);
      } else {
        // Proof of possession: a key of this page's, the tokens bound to it (issue 13 §3).
        const pop = cfg.proof_of_possession ? await PopKey.generate() : undefined;
        start(await exchangeCode(cfg, cb.code, cb.verifier, pop), pop);
      }
      notice('');
      return;
    } catch (e) {
      notice('');
      authProblem = e instanceof TokenError && e.code === 'network'
        ? 'Sign-in failed: the server cannot be reached. Please try again.'
        : e instanceof TokenError
          ? 'Sign-in failed. Please sign in again.'
          : `Sign-in failed: ${(e as Error).message}`;
    }
  }
  showSignedIn(null);
  render();
}

/** Removes the authorization response from the address bar (and from history). */
function cleanUrl(): void {
  const u = new URL(location.href);
  for (const k of ['code', 'state', 'iss', 'error', 'error_description', 'error_uri', 'session_state']) {
    u.searchParams.delete(k);
  }
  history.replaceState(history.state, '', u.pathname + u.search + u.hash);
}

// ---------------------------------------------------------------------------------------------
// Session: start, refresh, end

function start(tokens: Tokens, pop?: PopKey): void {
  const c = cfg as WicConfig;
  const claims = decodeJwtPayload(tokens.access_token);
  const impu = typeof claims.impu === 'string' ? claims.impu : '';
  if (!/^sips?:/i.test(impu)) {
    throw new Error('your account has no IMS identity (IMPU).');
  }
  authProblem = '';
  connProblem = '';
  regProblem = '';
  const token = (): string => session?.access ?? tokens.access_token;
  const phone = new Phone(c, impu, bearer(tokens.access_token), phoneEvents, pop ? { key: pop, token } : undefined);
  session = {
    impu,
    access: tokens.access_token,
    refresh: tokens.refresh_token,
    expiresAt: Date.now() + tokens.expires_in * 1000,
    refreshTimer: null,
    refreshing: false,
    refreshFailures: 0,
    refreshes: 0,
    phone,
    codeMode: false,
    pop,
  };
  if (pop) document.body.dataset.pop = 'on';
  scheduleRefresh(session, refreshDelayMs(tokens.expires_in));
  showSignedIn(impu);
  dispatch({ type: 'signedIn' });
  phone.start();
}

/**
 * `wwsf.sign_in = "code_in_register"`: the code goes in the REGISTER and the gateway holds the
 * tokens for this connection (and refreshes them). The page holds no token: nothing to refresh
 * or revoke here. A new connection cannot reuse the code (a replay, which the gateway refuses
 * and which ends the grant), so losing the connection ends the sign-in.
 */
function startWithCode(impu: string, code: string, verifier: string): void {
  const c = cfg as WicConfig;
  if (!/^sips?:/i.test(impu)) {
    throw new Error('your account has no IMS identity (IMPU).');
  }
  authProblem = '';
  connProblem = '';
  regProblem = '';
  const phone = new Phone(c, impu, codeCredential(c, code, verifier), phoneEvents);
  session = {
    impu,
    access: '',
    refresh: null,
    expiresAt: Number.POSITIVE_INFINITY,
    refreshTimer: null,
    refreshing: false,
    refreshFailures: 0,
    refreshes: 0,
    phone,
    codeMode: true,
  };
  document.body.dataset.signIn = 'code_in_register';
  showSignedIn(impu);
  dispatch({ type: 'signedIn' });
  phone.start();
}

/**
 * code_in_register: the connection is gone, and its grant with it. Once the gateway answers
 * again, a signed-in WAF session gives a new code without asking the person anything (a
 * redirect through /oauth/authorize and back); a session that has ended means signing in.
 */
async function recoverWithNewCode(s: Session): Promise<void> {
  s.phone.stop();
  const c = cfg as WicConfig;
  for (let attempt = 1; session === s; attempt += 1) {
    connProblem = 'Connection lost — signing in again when the gateway is back…';
    render();
    await new Promise((r) => setTimeout(r, registerRetryDelayMs(attempt)));
    if (session !== s) return;
    let impu: unknown;
    try {
      const res = await fetch(c.me_endpoint, { cache: 'no-store', credentials: 'same-origin' });
      if (!res.ok) continue;
      impu = ((await res.json()) as { impu?: unknown }).impu;
    } catch {
      continue; // not reachable yet
    }
    if (typeof impu !== 'string') {
      await endSession(MSG.ended);
      return;
    }
    location.assign(await beginSignIn(c));
    return;
  }
}

/** The signed-in person's IMPU from the WAF's session (code_in_register mode). */
async function whoAmI(c: WicConfig): Promise<string> {
  const res = await fetch(c.me_endpoint, { cache: 'no-store', credentials: 'same-origin' });
  if (!res.ok) throw new Error(`the gateway does not know who signed in (HTTP ${res.status})`);
  const body = (await res.json()) as { impu?: unknown };
  if (body.impu === null) throw new Error('your sign-in at the gateway has ended; please sign in again.');
  return typeof body.impu === 'string' ? body.impu : '';
}

function scheduleRefresh(s: Session, delayMs: number): void {
  if (s.refreshTimer !== null) clearTimeout(s.refreshTimer);
  s.refreshTimer = setTimeout(() => {
    s.refreshTimer = null;
    void refreshNow(s);
  }, delayMs);
}

/**
 * RFC 6749 §6 with rotation: the answer's refresh token replaces ours. The new access token
 * goes to JsSIP and a REGISTER carries it at once, so the binding never runs on an old token.
 */
async function refreshNow(s: Session): Promise<void> {
  if (session !== s || s.refreshing) return;
  const c = cfg as WicConfig;
  if (!s.refresh) {
    // No refresh token was issued: the sign-in ends with the access token.
    const left = s.expiresAt - Date.now();
    if (left > 0) {
      s.refreshTimer = setTimeout(() => void refreshNow(s), left);
    } else {
      await endSession(MSG.ended);
    }
    return;
  }
  s.refreshing = true;
  try {
    const t = await refresh(c, s.refresh, s.pop);
    if (session !== s) return;
    s.access = t.access_token;
    if (t.refresh_token) s.refresh = t.refresh_token;
    s.expiresAt = Date.now() + t.expires_in * 1000;
    s.refreshFailures = 0;
    s.refreshes += 1;
    document.body.dataset.tokenRefreshes = String(s.refreshes);
    s.phone.setToken(t.access_token);
    scheduleRefresh(s, refreshDelayMs(t.expires_in));
  } catch (e) {
    if (session !== s) return;
    const transient = e instanceof TokenError && ['network', 'server_error', 'temporarily_unavailable'].includes(e.code);
    if (transient) {
      // The gateway may be restarting: try again soon, while the access token still lasts
      // and after (the refresh token may outlive it).
      s.refreshFailures += 1;
      scheduleRefresh(s, registerRetryDelayMs(s.refreshFailures));
    } else {
      await endSession(MSG.ended);
    }
  } finally {
    s.refreshing = false;
  }
}

/** Ends the session locally (the server refused us): the person is offered to sign in again. */
async function endSession(message: string): Promise<void> {
  const s = session;
  if (!s) return;
  clearSession();
  authProblem = message;
  render();
  await s.phone.unregisterAndStop(1000);
  // Whatever is left of the grant is of no use any more (RFC 7009).
  if (s.refresh && cfg) void revoke(cfg, s.refresh, 'refresh_token');
}

function clearSession(): void {
  const s = session;
  if (s && s.refreshTimer !== null) clearTimeout(s.refreshTimer);
  session = null;
  if (regRetryTimer !== null) clearTimeout(regRetryTimer);
  regRetryTimer = null;
  regFailures = 0;
  connProblem = '';
  regProblem = '';
  callProblem = '';
  dispatch({ type: 'signedOut' });
  showSignedIn(null);
}

async function signIn(): Promise<void> {
  if (!cfg || busy) return;
  busy = true;
  ui.signIn.disabled = true;
  try {
    location.assign(await beginSignIn(cfg));
  } catch (e) {
    authProblem = `Sign-in cannot start: ${(e as Error).message}`;
    ui.signIn.disabled = false;
    busy = false;
    render();
  }
}

/** Un-REGISTER, revoke both tokens (RFC 7009), end the WAF session, forget everything. */
async function signOut(): Promise<void> {
  const s = session;
  const c = cfg;
  if (!s || !c || busy) return;
  busy = true;
  ui.signOut.disabled = true;
  notice('Signing out…');
  if (s.refreshTimer !== null) clearTimeout(s.refreshTimer);
  s.refreshTimer = null;
  if (regRetryTimer !== null) clearTimeout(regRetryTimer);
  regRetryTimer = null;
  await s.phone.unregisterAndStop(3000);
  await Promise.all([
    s.refresh ? revoke(c, s.refresh, 'refresh_token') : Promise.resolve(),
    // With code_in_register the gateway held the tokens; closing the connection revokes them.
    s.access ? revoke(c, s.access, 'access_token') : Promise.resolve(),
  ]);
  await endWafSession(c);
  clearSession();
  authProblem = '';
  ui.signOut.disabled = false;
  busy = false;
  notice('You are signed out.');
  render();
  ui.signIn.focus();
}

// ---------------------------------------------------------------------------------------------
// SIP events

const phoneEvents = {
  registration(state: RegState): void {
    if (!session) return;
    dispatch({ type: state === 'registered' ? 'registered' : 'unregistered' });
    if (state === 'registered') {
      regProblem = '';
      regFailures = 0;
      if (regRetryTimer !== null) clearTimeout(regRetryTimer);
      regRetryTimer = null;
    }
    render();
  },

  registrationFailed(code: number | null, cause: string): void {
    const s = session;
    if (!s) return;
    if (code === 401 || code === 407) {
      // RFC 8898 §2.2: the token was refused. If it simply ran out (a long outage) a refresh
      // fixes it; a token that should still be good was revoked or is not trusted any more.
      if (s.refresh && s.expiresAt - Date.now() < 5000) {
        void refreshNow(s);
        return;
      }
      void endSession(MSG.refused);
      return;
    }
    if (code === 403) {
      void endSession(MSG.notAllowed);
      return;
    }
    if (code === null && cause === 'Connection Error') return; // the connection events tell
    const unreachable = code === null || code === 408 || code === 480 || code >= 500;
    if (unreachable) {
      regFailures += 1;
      const delay = registerRetryDelayMs(regFailures);
      const why = code === null ? 'no answer' : String(code);
      regProblem = `The IMS network is unreachable (${why}). Next attempt at ${clock(new Date(Date.now() + delay))}.`;
      if (regRetryTimer !== null) clearTimeout(regRetryTimer);
      regRetryTimer = setTimeout(() => {
        regRetryTimer = null;
        session?.phone.register();
      }, delay);
    } else {
      regProblem = `Registration was refused: ${code} ${statusInWords(code)}.`;
    }
    render();
  },

  connection(state: 'connecting' | 'connected' | 'disconnected', nextAttemptAt: number | null): void {
    if (!session) return;
    if (state === 'disconnected' && session.codeMode) {
      // The code was for that connection: sending it on a new one is a replay, which the
      // gateway refuses and which revokes the sign-in. Get a new code instead.
      dispatch({ type: 'connectionLost' });
      void recoverWithNewCode(session);
      return;
    }
    if (state === 'connected') {
      connProblem = '';
    } else if (state === 'disconnected') {
      // A call over the lost flow is lost with it (an offered one cannot be answered any more).
      dispatch({ type: 'connectionLost' });
      connProblem = nextAttemptAt !== null
        ? `Connection lost — reconnecting… Next attempt at ${clock(new Date(nextAttemptAt))}.`
        : 'Connection lost — reconnecting…';
    } else if (connProblem !== '') {
      connProblem = 'Connection lost — reconnecting…';
    }
    render();
  },

  incomingMessage(m: { from: string; fromName: string; body: string; at: Date }): void {
    addIncoming(m.from, m.fromName, m.body, m.at);
  },

  incomingCall(rtc: RTCSession): void {
    const id = nextCallId++;
    const c = new Call(id, 'in', rtc, callEvents);
    calls.set(id, c);
    // The machine decides: ring, or 486 Busy Here when a call is already there.
    dispatch({ type: 'incoming', id, uri: c.uri, name: c.name });
  },
};

/** JsSIP's call events, for the current call only (a call turned down as busy just ends). */
const callEvents: CallEvents = {
  progress: (id) => dispatchCall(id, { type: 'progress', id }),
  connected: (id) => dispatchCall(id, { type: 'connected', id }),
  ended: (id, failure) => {
    calls.delete(id);
    dispatchCall(id, { type: 'ended', id, failure });
  },
  peerConnection: (id, pc) => {
    if (callOf(machine.state)?.id === id) audio.attach(pc);
  },
  mediaLost: (id) => dispatchCall(id, { type: 'mediaLost', id }),
};

function dispatchCall(id: number, ev: Event): void {
  if (callOf(machine.state)?.id === id) dispatch(ev);
}

// ---------------------------------------------------------------------------------------------
// The machine: events in, effects out, the page drawn from the state

const queue: Event[] = [];
let dispatching = false;

/**
 * Feeds `ev` to the machine and carries out its effects. An effect may cause more events
 * (JsSIP emits some at once): they wait in the queue, so the machine sees one event at a time.
 */
function dispatch(ev: Event): void {
  queue.push(ev);
  if (dispatching) return;
  dispatching = true;
  try {
    for (let e = queue.shift(); e; e = queue.shift()) {
      const before = machine;
      const r = step(machine, e, Date.now());
      machine = r.m;
      if (r.ignored) {
        console.debug(`wic: ignored ${r.ignored} (${machine.ignored} so far)`);
        document.body.dataset.ignoredEvents = String(machine.ignored);
        continue;
      }
      enteredState(before);
      for (const fx of r.effects) effect(fx);
    }
  } finally {
    dispatching = false;
  }
  render();
}

/** What changes on the page once when a state is entered or left. */
function enteredState(before: Machine): void {
  const was = callOf(before.state);
  const now = callOf(machine.state);
  if (now && (!was || was.id !== now.id)) {
    callProblem = '';
    dtmfSent = '';
    notice('');
    if (callTicker === null) callTicker = setInterval(renderCall, 250);
  }
  if (was && (!now || was.id !== now.id)) {
    audio.detach();
    if (callTicker !== null) clearInterval(callTicker);
    callTicker = null;
  }
  if (machine.lastEnd && machine.lastEnd !== before.lastEnd) ended(machine.lastEnd);
  const ringing = machine.state.kind === 'ringingIn';
  if (ringing && before.state.kind !== 'ringingIn' && now) showRinging(now);
  if (!ringing && before.state.kind === 'ringingIn') hideRinging(now !== null);
  if (was && !now && ui.inCall.contains(document.activeElement)) ui.dialAddress.focus();
}

function ended(e: CallEnd): void {
  const w = callEndInWords(e);
  callProblem = w.error;
  notice(w.notice);
}

function effect(fx: Effect): void {
  if (fx.do === 'startCall') {
    const s = session;
    if (!s) {
      queue.push({ type: 'ended', id: fx.id, failure: { code: null, reason: '', warning: '', cause: 'Connection Error' } });
      return;
    }
    calls.set(fx.id, s.phone.call(fx.id, fx.uri, micConstraints(processing), callEvents));
    return;
  }
  const c = calls.get(fx.id);
  if (!c) {
    // JsSIP already let go of it; tell the machine, which may be waiting for the end.
    if (fx.do === 'terminate' || fx.do === 'reject') queue.push({ type: 'ended', id: fx.id, failure: null });
    return;
  }
  switch (fx.do) {
    case 'answer':
      void c.answer(micConstraints(processing));
      return;
    case 'reject':
      c.reject(fx.code);
      return;
    case 'terminate':
      c.hangUp();
      return;
    case 'hold':
      c.hold();
      return;
    case 'unhold':
      c.unhold();
      return;
    case 'mute':
      c.mute();
      return;
    case 'unmute':
      c.unmute();
      return;
    case 'dtmf':
      if (c.dtmf(fx.tone)) {
        dtmfSent = (dtmfSent + fx.tone).slice(-24);
      } else {
        callProblem = 'Key tones cannot be sent in this call (the other side did not agree to RFC 4733 tones).';
      }
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Page

function wireUi(): void {
  ui.signIn.addEventListener('click', () => void signIn());
  ui.signOut.addEventListener('click', () => void signOut());
  ui.callReject.addEventListener('click', () => dispatch({ type: 'reject' }));
  ui.callAccept.addEventListener('click', () => {
    audio.wake();
    dispatch({ type: 'accept' });
  });
  ui.dialForm.addEventListener('submit', (e) => {
    e.preventDefault();
    audio.wake();
    dial();
  });
  ui.dialAddress.addEventListener('input', () => dialError(''));
  for (const k of ui.keys) {
    k.addEventListener('click', () => key(k.dataset.key ?? ''));
  }
  ui.callHangup.addEventListener('click', () => dispatch({ type: 'hangup' }));
  ui.callMute.addEventListener('click', () => {
    const s = machine.state;
    dispatch({ type: (s.kind === 'active' || s.kind === 'held') && s.muted ? 'unmute' : 'mute' });
  });
  ui.callHold.addEventListener('click', () => dispatch({ type: machine.state.kind === 'held' ? 'resume' : 'hold' }));
  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    sendMessage();
  });
  ui.to.addEventListener('input', () => fieldError(null, ''));
  // Leaving the page: un-REGISTER while the socket is still there (the next page has no
  // token, so a binding left behind would only point at a closed flow until it expires).
  window.addEventListener('pagehide', () => session?.phone.stop());
  window.addEventListener('pageshow', (e) => {
    if (e.persisted) location.reload();
  });
  ui.text.addEventListener('input', () => fieldError(null, ''));
}

function dial(): void {
  const s = session;
  const c = cfg;
  if (!s || !c || callOf(machine.state)) return;
  const target = completeAddress(ui.dialAddress.value, c.sip_domain);
  if (!target.ok) {
    dialError(target.reason);
    return;
  }
  if (machine.state.kind !== 'registered') {
    dialError(MSG.notRegistered);
    return;
  }
  dialError('');
  dispatch({ type: 'dial', id: nextCallId++, uri: target.uri, name: target.uri });
}

/** A dial-pad key: a tone in a call (RFC 4733), a character of the address otherwise. */
function key(k: string): void {
  if (k === '') return;
  if (callOf(machine.state)) {
    dispatch({ type: 'dtmf', tone: k });
    return;
  }
  typeIntoAddress(k);
  dialError('');
}

function dialError(text: string): void {
  callProblem = text;
  if (text) ui.dialAddress.setAttribute('aria-invalid', 'true');
  else ui.dialAddress.removeAttribute('aria-invalid');
  render();
}

function sendMessage(): void {
  const s = session;
  const c = cfg;
  if (!s || !c) return;
  const target = completeAddress(ui.to.value, c.sip_domain);
  if (!target.ok) {
    fieldError(ui.to, target.reason);
    return;
  }
  const body = ui.text.value;
  if (body.trim() === '') {
    fieldError(ui.text, 'Type a message first.');
    return;
  }
  if (!s.phone.isRegistered()) {
    fieldError(null, 'You are not registered right now, so the message cannot be sent. Try again when the status shows Registered.');
    return;
  }
  fieldError(null, '');
  const update = addOutgoing(target.uri, body, new Date());
  update('Sending…', 'sending', null);
  s.phone.sendMessage(target.uri, body, (code, cause) => {
    const ok = code !== null && code >= 200 && code < 300;
    update(deliveryInWords(code, cause), ok ? 'delivered' : 'failed', code);
  });
  ui.text.value = '';
  ui.text.focus();
}

function fieldError(field: HTMLInputElement | null, text: string): void {
  setText(ui.formError, text);
  for (const f of [ui.to, ui.text]) {
    if (f === field) f.setAttribute('aria-invalid', 'true');
    else f.removeAttribute('aria-invalid');
  }
  if (field) {
    field.setAttribute('aria-errormessage', 'msg-form-error');
    field.focus();
  }
}

function notice(text: string): void {
  setText(ui.notice, text);
}

function render(): void {
  const reg = regOf(machine.state);
  const shown: RegState = reg === 'registered' ? 'registered'
    : reg === 'registering' && !connProblem && !regProblem ? 'registering' : 'unregistered';
  showRegState(session ? shown : 'unregistered');
  setText(ui.error, authProblem || connProblem || regProblem || callProblem);
  if (!session) {
    ui.signIn.hidden = false;
    ui.welcome.hidden = false;
    if (cfg) ui.signIn.disabled = busy;
  }
  renderCall();
}

function renderCall(): void {
  showCall(machine, Date.now(), dtmfSent);
}
