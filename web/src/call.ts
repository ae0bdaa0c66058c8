/**
 * One call over the WIC's JsSIP UA, either way: the microphone (getUserMedia, opened before
 * JsSIP sees the call), the INVITE or the answer with the eIMS-AGW's RTCPeerConnection settings,
 * hold (re-INVITE a=sendonly), mute, RFC 4733 keys, and its end as a `Failure` the machine and
 * words.ts understand.
 *
 * Owns: one JsSIP RTCSession and the local MediaStream. Must not touch: the DOM, the UA's
 * registration, other calls.
 */
import type * as JsSIP from 'jssip';
import type { EndEvent, RTCSession } from 'jssip/lib/RTCSession';
import { bareUri } from './address';
import type { Failure } from './machine';
import { warningText } from './words';

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
