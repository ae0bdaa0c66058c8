/**
 * The SIP side of the WIC: one JsSIP user agent over one WebSocket (RFC 7118), registered with
 * a Bearer token (RFC 8898) as an RFC 5626 outbound client (`+sip.instance`, `reg-id`).
 *
 * Owns: the JsSIP UA and its events. Must not touch: the DOM, tokens other than the one it is
 * handed, storage other than the instance id.
 */
import * as JsSIP from 'jssip';
import type { EndEvent, RTCSession } from 'jssip/lib/RTCSession';
import type { IncomingMessageEvent, IncomingRTCSessionEvent, OutgoingMessageEvent, OutgoingRTCSessionEvent } from 'jssip/lib/UA';
import type { WicConfig } from './config';
import { bareUri } from './address';
import { randomToken, randomUuid } from './pkce';
import type { Failure } from './machine';
import { warningText } from './words';
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

/** What a call tells the driver; `id` is the driver's. */
export interface CallEvents {
  /** 180/183 for our INVITE. */
  progress(id: number): void;
  /** 200 sent or received: the call is up. */
  connected(id: number): void;
  /** Over; `failure` null for a normal end (BYE, CANCEL, our own hang-up). */
  ended(id: number, failure: Failure | null): void;
  /** The call's RTCPeerConnection exists (JsSIP made it). */
  peerConnection(id: number, pc: RTCPeerConnection): void;
  /** ICE failed: the media path is gone. */
  mediaLost(id: number): void;
}

/** RTCPeerConnection settings for the eIMS-AGW: ICE-lite, rtcp-mux and BUNDLE on its side. */
const PC_CONFIG: RTCConfiguration = { iceServers: [], rtcpMuxPolicy: 'require', bundlePolicy: 'max-bundle' };

/**
 * One call, either way, from the moment it exists for the person (dialled, or ringing) to its
 * end. The microphone is opened here, before JsSIP sees the call, so that a missing or refused
 * microphone is known by name and no INVITE goes out without one.
 */
export class Call {
  readonly uri: string;
  readonly name: string;
  private session: RTCSession | null = null;
  private stream: MediaStream | null = null;
  private over = false;
  /** Set when we end the call for a reason JsSIP does not know (the microphone). */
  private localFailure: Failure | null = null;

  constructor(
    readonly id: number,
    readonly dir: 'in' | 'out',
    target: { uri: string; name: string } | RTCSession,
    private readonly ev: CallEvents,
  ) {
    if ('remote_identity' in target) {
      const id0 = target.remote_identity;
      this.uri = bareUri(id0.uri.toString());
      this.name = id0.display_name ? `${id0.display_name} (${this.uri})` : this.uri;
      this.adopt(target);
    } else {
      this.uri = target.uri;
      this.name = target.name;
    }
  }

  /** Outgoing: microphone, then INVITE through `ua`. */
  async dial(ua: JsSIP.UA, constraints: MediaStreamConstraints): Promise<void> {
    const stream = await this.microphone(constraints);
    if (!stream) return;
    try {
      const s = ua.call(this.uri, { mediaStream: stream, pcConfig: PC_CONFIG, rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false } });
      this.adopt(s);
    } catch (e) {
      this.finish({ code: null, reason: '', warning: '', cause: (e as Error).message || 'Internal Error' });
    }
  }

  /** Incoming: microphone, then 200 with our SDP answer (JsSIP answers 488 if the offer is unusable). */
  async answer(constraints: MediaStreamConstraints): Promise<void> {
    const stream = await this.microphone(constraints);
    if (!stream || !this.session) return;
    try {
      this.session.answer({ mediaStream: stream, pcConfig: PC_CONFIG });
    } catch (e) {
      this.finish({ code: null, reason: '', warning: '', cause: (e as Error).message || 'Internal Error' });
    }
  }

  /** A final response to a ringing INVITE: 486 Busy Here, or 480 when we cannot take it. */
  reject(code: 486 | 480): void {
    this.terminate({ status_code: code });
  }

  /** CANCEL, BYE or a final error, whichever fits; before the INVITE left, just forget it. */
  hangUp(): void {
    if (!this.session) {
      this.finish(null);
      return;
    }
    this.terminate({});
  }

  hold(): void {
    this.session?.hold();
  }

  unhold(): void {
    this.session?.unhold();
  }

  mute(): void {
    this.session?.mute({ audio: true });
  }

  unmute(): void {
    this.session?.unmute({ audio: true });
  }

  /** RFC 4733 telephone-event in the RTP stream (RTCDTMFSender); false if it cannot be sent. */
  dtmf(tone: string): boolean {
    const s = this.session;
    if (!s) return false;
    const sender = s.connection?.getSenders().find((x) => x.track && x.track.kind === 'audio');
    if (!sender || !sender.dtmf || !sender.dtmf.canInsertDTMF) return false;
    try {
      s.sendDTMF(tone, { transportType: 'RFC2833' as JsSIP.C.DTMF_TRANSPORT, duration: 160, interToneGap: 70 });
      return true;
    } catch {
      return false;
    }
  }

  private async microphone(constraints: MediaStreamConstraints): Promise<MediaStream | null> {
    try {
      // Absent outside a secure context (a page not on https or localhost).
      if (!navigator.mediaDevices?.getUserMedia) throw new DOMException('no getUserMedia', 'NotSupportedError');
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      if (this.over) {
        stopAll(stream);
        return null;
      }
      this.stream = stream;
      return stream;
    } catch (e) {
      const name = e instanceof DOMException || e instanceof Error ? e.name : 'Error';
      const failure: Failure = { code: null, reason: name, warning: '', cause: 'User Denied Media Access' };
      if (this.session) {
        // An incoming call we cannot take: 480 Temporarily Unavailable, as JsSIP would.
        this.localFailure = failure;
        this.terminate({ status_code: 480 });
      } else {
        this.finish(failure);
      }
      return null;
    }
  }

  private terminate(o: { status_code?: number }): void {
    const s = this.session;
    if (!s || s.isEnded()) return;
    try {
      s.terminate(o);
    } catch {
      // Ended by the other side in the meantime: its event follows.
    }
  }

  private adopt(s: RTCSession): void {
    this.session = s;
    s.on('progress', () => {
      if (this.dir === 'out' && !this.over) this.ev.progress(this.id);
    });
    s.on('accepted', () => {
      if (!this.over) this.ev.connected(this.id);
    });
    s.on('peerconnection', (e) => this.watch(e.peerconnection));
    s.on('failed', (e) => this.finish(this.localFailure ?? failureOf(e, true)));
    s.on('ended', (e) => this.finish(this.localFailure ?? failureOf(e, false)));
    // JsSIP makes the outgoing call's peer connection before this listener exists.
    if (s.connection) this.watch(s.connection);
  }

  private watched: RTCPeerConnection | null = null;

  private watch(pc: RTCPeerConnection): void {
    if (this.watched === pc) return;
    this.watched = pc;
    this.ev.peerConnection(this.id, pc);
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc.iceConnectionState === 'failed' && !this.over) this.ev.mediaLost(this.id);
    });
  }

  private finish(failure: Failure | null): void {
    if (this.over) return;
    this.over = true;
    if (this.stream) stopAll(this.stream);
    this.stream = null;
    this.ev.ended(this.id, failure);
  }
}

function stopAll(stream: MediaStream): void {
  for (const t of stream.getTracks()) t.stop();
}

/** The failure of a JsSIP 'failed'/'ended' event; null for a normal end. */
function failureOf(e: EndEvent, failed: boolean): Failure | null {
  const cause = String(e.cause ?? '');
  if (e.originator === 'local') return null; // our own hang-up, cancel or rejection
  if (!failed && cause === 'Terminated') return null; // JsSIP's causes.BYE: a BYE came
  if (failed && cause === 'Canceled') return null; // the caller gave up (RFC 3261 §9.2)
  const msg = e.message as { status_code?: unknown; reason_phrase?: unknown; getHeader?: (n: string) => string | undefined } | null;
  if (msg && typeof msg.status_code === 'number') {
    const w = typeof msg.getHeader === 'function' ? msg.getHeader('Warning') ?? '' : '';
    return { code: msg.status_code, reason: String(msg.reason_phrase ?? ''), warning: warningText(w), cause };
  }
  return { code: null, reason: '', warning: '', cause };
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

  constructor(cfg: WicConfig, impu: string, accessToken: string, private readonly ev: PhoneEvents) {
    const socket = new JsSIP.WebSocketInterface(cfg.websocket_url);
    const inst = instance();
    this.ua = new JsSIP.UA({
      sockets: [socket],
      uri: impu,
      // JsSIP puts this value as it is in an Authorization header on every request it sends.
      authorization_jwt: bearer(accessToken),
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
      this.ev.registration('registered');
      this.maybeRegisterAgain();
    });
    ua.on('unregistered', () => {
      if (!this.stopped) this.ev.registration('unregistered');
    });
    ua.on('registrationFailed', (e) => {
      if (this.stopped) return;
      const code = e.response ? e.response.status_code : null;
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

function bearer(token: string): string {
  // RFC 6750 §2.1 form; the gateway also accepts TS 24.371's `Bearer access_token="…"`.
  return `Bearer ${token}`;
}
