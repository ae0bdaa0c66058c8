/**
 * The SIP side of the WIC: one JsSIP user agent over one WebSocket (RFC 7118), registered with
 * a Bearer token (RFC 8898) as an RFC 5626 outbound client (`+sip.instance`, `reg-id`).
 *
 * Calls: an incoming INVITE goes to the driver as it is; `call()` starts an outgoing one; each
 * call is then a `Call` (call.ts).
 *
 * Owns: the JsSIP UA and its events. Must not touch: the DOM, tokens other than the one it is
 * handed, storage other than the instance id.
 */
import * as JsSIP from 'jssip';
import type { RTCSession } from 'jssip/lib/RTCSession';
import type { IncomingMessageEvent, IncomingRTCSessionEvent, OutgoingMessageEvent, OutgoingRTCSessionEvent } from 'jssip/lib/UA';
import type { WicConfig } from './config';
import type { PopKey } from './pop';
import { bareUri } from './address';
import { randomToken, randomUuid } from './pkce';
import { Call, type CallEvents } from './call';
import { backoffDelayMs } from './timing';

/** RFC 5626 §4.5 back-off bounds (seconds); also given to JsSIP as its own recovery bounds. */
export const RECOVERY_MIN_SEC = 2;
export const RECOVERY_MAX_SEC = 30;
const REGISTER_EXPIRES = 600;
const INSTANCE_KEY = 'wic.instance';

export type RegState = 'registered' | 'registering' | 'unregistered';

export interface PhoneEvents {
  registration(state: RegState): void;
  /** A REGISTER got a final failure (`code` null when no response came). */
  registrationFailed(code: number | null, cause: string): void;
  /** `nextAttemptAt` (ms since epoch) is set while a reconnection is scheduled. */
  connection(state: 'connecting' | 'connected' | 'disconnected', nextAttemptAt: number | null): void;
  incomingMessage(m: { from: string; fromName: string; body: string; at: Date }): void;
  /** An incoming INVITE (not yet a Call: the driver gives it its id and events). */
  incomingCall(session: RTCSession): void;
}

/** The RFC 5626 instance and the Contact user, kept per tab so a reload keeps them. */
function instance(): { uuid: string; contact: string } {
  try {
    const raw = sessionStorage.getItem(INSTANCE_KEY);
    if (raw) {
      const v = JSON.parse(raw) as { uuid?: unknown; contact?: unknown };
      if (typeof v.uuid === 'string' && typeof v.contact === 'string') {
        return { uuid: v.uuid, contact: v.contact };
      }
    }
  } catch {
    // A broken entry is replaced below.
  }
  // RFC 7118 §5: the Contact host is made up, under .invalid.
  const v = { uuid: randomUuid(), contact: `sip:${randomToken(8)}@${randomToken(12)}.invalid;transport=ws` };
  try {
    sessionStorage.setItem(INSTANCE_KEY, JSON.stringify(v));
  } catch {
    // Private mode without storage: the instance then lasts as long as the page.
  }
  return v;
}

export class Phone {
  private readonly ua: JsSIP.UA;
  private stopped = false;
  private watch: ReturnType<typeof setInterval> | null = null;
  private registerAgain = false;

  /** Proofs answered in a row without a registration: a gateway that keeps asking is refused. */
  private proofsInARow = 0;

  /**
   * `authorization`: the Authorization value of every request ([`bearer`], [`codeCredential`]).
   * `pop`: the key the token is bound to and the current token, to prove possession when the
   * gateway asks (a REGISTER on a new connection; issue 13 §3).
   */
  constructor(
    cfg: WicConfig,
    impu: string,
    authorization: string,
    private readonly ev: PhoneEvents,
    private readonly pop?: { key: PopKey; token: () => string },
  ) {
    const socket = new JsSIP.WebSocketInterface(cfg.websocket_url);
    const inst = instance();
    this.ua = new JsSIP.UA({
      sockets: [socket],
      uri: impu,
      // JsSIP puts this value as it is in an Authorization header on every request it sends.
      authorization_jwt: authorization,
      register: true,
      register_expires: REGISTER_EXPIRES,
      session_timers: false,
      contact_uri: inst.contact,
      instance_id: inst.uuid,
      connection_recovery_min_interval: RECOVERY_MIN_SEC,
      connection_recovery_max_interval: RECOVERY_MAX_SEC,
      user_agent: `imsgw-wic JsSIP/${JsSIP.version}`,
    });
    this.useRfc5626Backoff();
    this.wire();
  }

  start(): void {
    this.ua.start();
  }

  isRegistered(): boolean {
    return this.ua.isRegistered();
  }

  /**
   * A new access token: every request from now on carries it, and the registration is renewed
   * with it at once (RFC 8898 §3: the registrar sees the fresh token before the old expires).
   */
  setToken(accessToken: string): void {
    this.ua.set('authorization_jwt', bearer(accessToken));
    this.register();
  }

  /**
   * REGISTER now; if one is in flight, once more when it ends (JsSIP drops a register() made
   * while its registrator is busy). In flight means ours or JsSIP's own renewal, which its timer
   * starts unseen; and JsSIP emits `registered` only for the first success, not for renewals.
   * So the registrator's `_registering` flag is what tells (read because JsSIP 3.x has no public
   * way to ask), watched until it clears. Without this a token refresh that lands during a
   * renewal, or after one, would reach the registrar only at the next renewal.
   */
  register(): void {
    if (this.stopped || !this.ua.isConnected()) return;
    if (this.registrarBusy()) {
      this.registerAgain = true;
    } else {
      if (!this.ua.isRegistered()) this.ev.registration('registering');
      this.ua.register();
    }
    this.watchRegistrar();
  }

  private registrarBusy(): boolean {
    return (this.ua.registrator() as unknown as { _registering?: boolean })._registering === true;
  }

  /** Polls the registrator until its REGISTER is answered, then sends a queued one. */
  private watchRegistrar(): void {
    if (this.watch !== null) return;
    this.watch = setInterval(() => {
      if (this.stopped || !this.ua.isConnected()) {
        this.stopWatching();
        return;
      }
      if (this.registrarBusy()) return;
      this.stopWatching();
      this.maybeRegisterAgain();
    }, 100);
  }

  private stopWatching(): void {
    if (this.watch !== null) {
      clearInterval(this.watch);
      this.watch = null;
    }
  }

  /** An outgoing call to `uri`: opens the microphone, then sends the INVITE. */
  call(id: number, uri: string, constraints: MediaStreamConstraints, ev: CallEvents): Call {
    const c = new Call(id, 'out', { uri, name: uri }, ev);
    void c.dial(this.ua, constraints);
    return c;
  }

  sendMessage(
    target: string,
    body: string,
    done: (code: number | null, cause: string) => void,
  ): void {
    this.ua.sendMessage(target, body, {
      contentType: 'text/plain;charset=utf-8',
      eventHandlers: {
        succeeded: (e) => done(e.response ? e.response.status_code : 200, ''),
        failed: (e) => done(e.response ? e.response.status_code : null, String(e.cause ?? '')),
      },
    });
  }

  /** Un-REGISTER and wait for the answer (at most `timeoutMs`), then stop the UA. */
  async unregisterAndStop(timeoutMs: number): Promise<void> {
    if (this.ua.isRegistered() && this.ua.isConnected()) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        const done = () => {
          clearTimeout(t);
          resolve();
        };
        this.ua.once('unregistered', done);
        this.ua.once('disconnected', done);
        this.ua.unregister();
      });
    }
    this.stop();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.stopWatching();
    try {
      this.ua.terminateSessions();
    } catch {
      // No sessions.
    }
    this.ua.stop();
    this.ua.removeAllListeners();
  }

  private wire(): void {
    const ua = this.ua;
    ua.on('connecting', () => {
      if (!this.stopped) this.ev.connection('connecting', null);
    });
    ua.on('connected', () => {
      if (this.stopped) return;
      // With register: true JsSIP sends REGISTER itself on every (re)connection (RFC 5626 §4.2.1).
      this.registerAgain = false;
      this.ev.connection('connected', null);
      this.ev.registration('registering');
    });
    ua.on('disconnected', () => {
      this.stopWatching();
      this.registerAgain = false;
      // The reconnection hook below reports the time of the next attempt.
    });
    ua.on('registered', () => {
      // A flow proves its key once: later REGISTERs on it carry no proof.
      this.proofsInARow = 0;
      ua.registrator().setExtraHeaders([]);
      this.ev.registration('registered');
      this.maybeRegisterAgain();
    });
    ua.on('unregistered', () => {
      if (!this.stopped) this.ev.registration('unregistered');
    });
    ua.on('registrationFailed', (e) => {
      if (this.stopped) return;
      const code = e.response ? e.response.status_code : null;
      const nonce = code === 401 && e.response ? e.response.getHeader('Proof-Nonce') : undefined;
      if (nonce && this.pop && this.proofsInARow < 2) {
        // The gateway wants this connection to prove it holds the token's key.
        this.proofsInARow += 1;
        void this.proveAndRegister(nonce);
        return;
      }
      // When a registration was in place JsSIP follows with 'unregistered' itself.
      if (!ua.isRegistered()) this.ev.registration('unregistered');
      this.ev.registrationFailed(code, String(e.cause ?? ''));
      this.maybeRegisterAgain();
    });
    ua.on('newMessage', (e: IncomingMessageEvent | OutgoingMessageEvent) => {
      if (e.originator !== 'remote') return;
      const req = e.request;
      const from = bareUri(req.from.uri.toString());
      const name = req.from.display_name;
      this.ev.incomingMessage({
        from,
        fromName: name ? `${name} (${from})` : from,
        body: typeof req.body === 'string' ? req.body : '',
        at: new Date(),
      });
    });
    ua.on('newRTCSession', (e: IncomingRTCSessionEvent | OutgoingRTCSessionEvent) => {
      if (e.originator !== 'remote') return;
      this.ev.incomingCall(e.session);
    });
  }

  /** REGISTER again with a proof over the request JsSIP will send next. */
  private async proveAndRegister(nonce: string): Promise<void> {
    const pop = this.pop;
    if (!pop) return;
    // JsSIP 3.x has no public way to read these; the next REGISTER has the next CSeq.
    const reg = this.ua.registrator() as unknown as { _call_id: string; _cseq: number; _registrar: { toString(): string } };
    const proof = await pop.key.sip({
      method: 'REGISTER',
      ruri: reg._registrar.toString(),
      call_id: reg._call_id,
      cseq: reg._cseq + 1,
      nonce,
      access_token: pop.token(),
    });
    if (this.stopped) return;
    this.ua.registrator().setExtraHeaders([`Proof: ${proof}`]);
    this.register();
  }

  private maybeRegisterAgain(): void {
    if (this.registerAgain) {
      this.registerAgain = false;
      this.register();
    }
  }

  /**
   * JsSIP 3.x retries a lost WebSocket after a random 1..2^n s (clamped to its min/max); it
   * tells nobody when. RFC 5626 §4.5 asks for 50–100% of min(max, base·2^n), and the person
   * should see when the next attempt is. This replaces the transport's private `_reconnect`
   * (same body, other delay); if a JsSIP version lacks it, JsSIP's own back-off stays and the
   * page shows no time.
   */
  private useRfc5626Backoff(): void {
    type Transport = {
      recover_attempts: number;
      recovery_timer: ReturnType<typeof setTimeout> | null;
      close_requested: boolean;
      isConnected(): boolean;
      isConnecting(): boolean;
      _getSocket(): void;
      connect(): void;
      _reconnect?: () => void;
    };
    const t = (this.ua as unknown as { _transport?: Transport })._transport;
    if (!t || typeof t._reconnect !== 'function' || typeof t._getSocket !== 'function') {
      this.ua.on('disconnected', () => {
        if (!this.stopped) this.ev.connection('disconnected', null);
      });
      return;
    }
    t._reconnect = () => {
      t.recover_attempts += 1;
      const delay = backoffDelayMs(t.recover_attempts, RECOVERY_MIN_SEC, RECOVERY_MAX_SEC);
      if (!this.stopped) this.ev.connection('disconnected', Date.now() + delay);
      t.recovery_timer = setTimeout(() => {
        t.recovery_timer = null;
        if (!t.close_requested && !(t.isConnected() || t.isConnecting())) {
          t._getSocket();
          t.connect();
        }
      }, delay);
    };
  }
}

/**
 * The code credential of `wwsf.sign_in = "code_in_register"`: the gateway exchanges the code
 * (with the PKCE verifier, for this client) and holds the tokens for this connection.
 */
export function codeCredential(cfg: WicConfig, code: string, verifier: string): string {
  const q = (v: string): string => `"${v.replace(/["\\]/g, '')}"`;
  return `Bearer code=${q(code)}, code_verifier=${q(verifier)}, client_id=${q(cfg.client_id)}, redirect_uri=${q(cfg.redirect_uri)}`;
}

export function bearer(token: string): string {
  // RFC 6750 §2.1 form; the gateway also accepts TS 24.371's `Bearer access_token="…"`.
  return `Bearer ${token}`;
}
