/**
 * The WIC's one state machine: the session (signed out, registering, registered) and the call
 * (calling, ringing in, early, answering, active, held, ending) in one place. Pure: no DOM, no
 * JsSIP, no clock; the time comes in with each event (`now`, ms), and what to do comes back as
 * effects for the driver (main.ts) to carry out, as str0m's `handle_input` / `poll_output` do.
 *
 * An event a state does not expect (a click that raced a hang-up, a late JsSIP event of a call
 * that is over) is never an error: the state stays, the event is counted in `ignored` and named
 * in `lastIgnored`, and no effect comes out.
 *
 * Owns: which state the WIC is in and what each event does to it. Must not touch: anything else.
 */

/** Whether the registration is in place; carried by every signed-in state. */
export type Reg = 'registering' | 'registered';

export interface Peer {
  /** The driver's id of the call (not JsSIP's), so events of an older call cannot hit this one. */
  id: number;
  /** The other side's bare URI. */
  uri: string;
  /** How to show them: "Bob (sip:bob@ims.example)". */
  name: string;
  dir: 'out' | 'in';
}

export type State =
  | { kind: 'signedOut' }
  | { kind: 'registering' }
  | { kind: 'registered' }
  /** Outgoing INVITE sent, no ringing yet. */
  | { kind: 'calling'; reg: Reg; call: Peer }
  /** Incoming INVITE, the notice is up. */
  | { kind: 'ringingIn'; reg: Reg; call: Peer }
  /** Outgoing: 180/183 came (the other side rings, or early media). */
  | { kind: 'early'; reg: Reg; call: Peer }
  /** Incoming: Accept was pressed; microphone, SDP answer and 200 are under way. */
  | { kind: 'answering'; reg: Reg; call: Peer }
  | { kind: 'active'; reg: Reg; call: Peer; since: number; muted: boolean }
  /** Active, put on hold by us (re-INVITE with a=sendonly). */
  | { kind: 'held'; reg: Reg; call: Peer; since: number; muted: boolean }
  /** We hung up; waiting for JsSIP to say the call is over. `since` 0 when it never connected. */
  | { kind: 'ending'; reg: Reg; call: Peer; since: number };

export type Kind = State['kind'];

/** How the last call ended, for the page (words are made in words.ts). */
export interface CallEnd {
  id: number;
  peer: string;
  /** 'local' we ended it; 'remote' the other side or the network did; 'busy' a second caller got 486. */
  by: 'local' | 'remote' | 'system';
  /** 'declined' we rejected a ringing call; 'missed' the caller gave up while it rang. */
  outcome: 'completed' | 'declined' | 'missed' | 'cancelled' | 'failed';
  /** Seconds it was connected (0 when never). */
  secs: number;
  failure: Failure | null;
}

/** Why a call failed, as the driver found it (SIP response, JsSIP cause, media). */
export interface Failure {
  code: number | null;
  reason: string;
  /** The text of a Warning header (RFC 3261 §20.43), e.g. the gateway's "no common codec". */
  warning: string;
  /** JsSIP's cause ('Busy', 'Rejected', 'WebRTC Error', 'User Denied Media Access', …) or ours. */
  cause: string;
}

export type Event =
  | { type: 'signedIn' }
  | { type: 'registered' }
  /** The registration is not in place (refused, expired, being renewed after a reconnect). */
  | { type: 'unregistered' }
  /** The WebSocket to the gateway is gone: a call over it is lost. */
  | { type: 'connectionLost' }
  | { type: 'signedOut' }
  | { type: 'dial'; id: number; uri: string; name: string }
  | { type: 'incoming'; id: number; uri: string; name: string }
  /** 180/183 for our INVITE. */
  | { type: 'progress'; id: number }
  /** 200 sent or received (JsSIP 'accepted'): the call is up. */
  | { type: 'connected'; id: number }
  /** JsSIP 'ended' or 'failed'; `failure` null for a normal BYE or CANCEL. */
  | { type: 'ended'; id: number; failure: Failure | null }
  /** The media path died (ICE failed): the call is over for the person. */
  | { type: 'mediaLost'; id: number }
  | { type: 'accept' }
  | { type: 'reject' }
  | { type: 'hangup' }
  | { type: 'hold' }
  | { type: 'resume' }
  | { type: 'mute' }
  | { type: 'unmute' }
  | { type: 'dtmf'; tone: string };

export type Effect =
  | { do: 'startCall'; id: number; uri: string }
  | { do: 'answer'; id: number }
  /** Final response to an incoming INVITE that is not answered. */
  | { do: 'reject'; id: number; code: 486 | 480 }
  /** CANCEL, BYE or a final error, whichever fits the call's SIP state (JsSIP terminate()). */
  | { do: 'terminate'; id: number }
  | { do: 'hold'; id: number }
  | { do: 'unhold'; id: number }
  | { do: 'mute'; id: number }
  | { do: 'unmute'; id: number }
  /** RFC 4733 telephone-event in the RTP stream. */
  | { do: 'dtmf'; id: number; tone: string };

export interface Machine {
  state: State;
  /** How the last call ended; null before the first (and after sign-out). */
  lastEnd: CallEnd | null;
  /** Events that did not fit the state, since the start. */
  ignored: number;
  lastIgnored: string;
}

export interface Step {
  m: Machine;
  effects: Effect[];
  /** Set when the event was ignored: which event in which state. */
  ignored: string | null;
}

export const DTMF_TONES = '0123456789*#';

export function initial(): Machine {
  return { state: { kind: 'signedOut' }, lastEnd: null, ignored: 0, lastIgnored: '' };
}

/** The call of a state, or null when there is none. */
export function callOf(s: State): Peer | null {
  return 'call' in s ? s.call : null;
}

/** The registration of a state ('registering' when signed out: nothing is in place). */
export function regOf(s: State): Reg | 'signedOut' {
  if (s.kind === 'signedOut') return 'signedOut';
  if (s.kind === 'registering' || s.kind === 'registered') return s.kind;
  return s.reg;
}

/** The test hook `call-state`: idle, calling, ringing, early, active, held, ended. */
export function callStateText(m: Machine): string {
  switch (m.state.kind) {
    case 'calling':
      return 'calling';
    case 'ringingIn':
      return 'ringing';
    case 'early':
    case 'answering':
      return 'early';
    case 'active':
      return 'active';
    case 'held':
      return 'held';
    case 'ending':
      return 'ended';
    default:
      return m.lastEnd ? 'ended' : 'idle';
  }
}

/** Applies one event. Never throws; an unexpected event leaves the machine as it was. */
export function step(m: Machine, ev: Event, now: number): Step {
  const r = transition(m, ev, now);
  if (r === null) {
    const what = `${ev.type} in ${m.state.kind}`;
    return { m: { ...m, ignored: m.ignored + 1, lastIgnored: what }, effects: [], ignored: what };
  }
  return { m: r.m, effects: r.effects, ignored: null };
}

type Result = { m: Machine; effects: Effect[] } | null;

function transition(m: Machine, ev: Event, now: number): Result {
  const s = m.state;
  const to = (state: State, ...effects: Effect[]): Result => ({ m: { ...m, state }, effects });
  const idle = (reg: Reg): State => ({ kind: reg });
  const call = callOf(s);
  const reg = regOf(s);

  switch (ev.type) {
    case 'signedIn':
      return s.kind === 'signedOut' ? to({ kind: 'registering' }) : null;

    case 'signedOut': {
      if (s.kind === 'signedOut') return null;
      // Sign-out or a refused token: the call goes with the session.
      const effects: Effect[] = call ? [endEffect(s)] : [];
      return { m: { ...m, state: { kind: 'signedOut' }, lastEnd: null }, effects };
    }

    case 'registered':
    case 'unregistered': {
      if (reg === 'signedOut') return null;
      const r: Reg = ev.type === 'registered' ? 'registered' : 'registering';
      if (!call) return to(idle(r));
      return to({ ...s, reg: r } as State);
    }

    case 'connectionLost': {
      if (reg === 'signedOut') return null;
      if (!call) return to(idle('registering'));
      // RFC 7118: the dialog lived on that WebSocket; nothing can reach the call any more.
      const failure: Failure = { code: null, reason: '', warning: '', cause: 'Connection Error' };
      const outcome = s.kind === 'ringingIn' ? 'missed' : s.kind === 'ending' ? 'completed' : 'failed';
      return ended(m, s, 'registering', outcome, 'system', s.kind === 'ending' ? null : failure, now, [
        s.kind === 'ringingIn' ? { do: 'reject', id: call.id, code: 480 } : { do: 'terminate', id: call.id },
      ]);
    }

    case 'dial':
      if (s.kind !== 'registered') return null;
      return to(
        { kind: 'calling', reg: 'registered', call: { id: ev.id, uri: ev.uri, name: ev.name, dir: 'out' } },
        { do: 'startCall', id: ev.id, uri: ev.uri },
      );

    case 'incoming':
      if (reg === 'signedOut') return { m, effects: [{ do: 'reject', id: ev.id, code: 480 }] };
      // One call at a time: a second caller hears busy (RFC 3261 §21.4.24).
      if (call) return { m, effects: [{ do: 'reject', id: ev.id, code: 486 }] };
      return to({ kind: 'ringingIn', reg, call: { id: ev.id, uri: ev.uri, name: ev.name, dir: 'in' } });

    case 'progress':
      if (!call || call.id !== ev.id) return null;
      if (s.kind === 'calling') return to({ kind: 'early', reg: s.reg, call });
      if (s.kind === 'early') return to(s); // more 18x: nothing new
      return null;

    case 'connected':
      if (!call || call.id !== ev.id) return null;
      if (s.kind === 'calling' || s.kind === 'early' || s.kind === 'answering') {
        return to({ kind: 'active', reg: s.reg, call, since: now, muted: false });
      }
      return null;

    case 'ended': {
      if (!call || call.id !== ev.id) return null;
      const r = reg as Reg; // a state with a call is signed in
      if (s.kind === 'ringingIn') return ended(m, s, r, 'missed', 'remote', null, now, []);
      if (s.kind === 'ending') return ended(m, s, r, s.since ? 'completed' : 'cancelled', 'local', null, now, []);
      const by = ev.failure && ev.failure.code === null ? 'system' : 'remote';
      if (ev.failure) return ended(m, s, r, 'failed', by, ev.failure, now, []);
      // A normal end before the call was up: the caller gave up while we answered.
      const wasUp = s.kind === 'active' || s.kind === 'held';
      return ended(m, s, r, wasUp ? 'completed' : call.dir === 'in' ? 'missed' : 'cancelled', by, null, now, []);
    }

    case 'mediaLost': {
      if (!call || call.id !== ev.id) return null;
      if (s.kind !== 'active' && s.kind !== 'held' && s.kind !== 'answering') return null;
      const failure: Failure = { code: null, reason: '', warning: '', cause: 'Media Lost' };
      return ended(m, s, reg as Reg, 'failed', 'system', failure, now, [{ do: 'terminate', id: call.id }]);
    }

    case 'accept':
      if (s.kind !== 'ringingIn') return null;
      return to({ kind: 'answering', reg: s.reg, call: s.call }, { do: 'answer', id: s.call.id });

    case 'reject':
      if (s.kind !== 'ringingIn') return null;
      return ended(m, s, s.reg, 'declined', 'local', null, now, [{ do: 'reject', id: s.call.id, code: 486 }]);

    case 'hangup':
      switch (s.kind) {
        case 'ringingIn':
          return ended(m, s, s.reg, 'declined', 'local', null, now, [{ do: 'reject', id: s.call.id, code: 486 }]);
        case 'calling':
        case 'early':
        case 'answering':
          return to({ kind: 'ending', reg: s.reg, call: s.call, since: 0 }, { do: 'terminate', id: s.call.id });
        case 'active':
        case 'held':
          return to({ kind: 'ending', reg: s.reg, call: s.call, since: s.since }, { do: 'terminate', id: s.call.id });
        default:
          return null;
      }

    case 'hold':
      if (s.kind !== 'active') return null;
      return to({ ...s, kind: 'held' }, { do: 'hold', id: s.call.id });

    case 'resume':
      if (s.kind !== 'held') return null;
      return to({ ...s, kind: 'active' }, { do: 'unhold', id: s.call.id });

    case 'mute':
      if ((s.kind !== 'active' && s.kind !== 'held') || s.muted) return null;
      return to({ ...s, muted: true }, { do: 'mute', id: s.call.id });

    case 'unmute':
      if ((s.kind !== 'active' && s.kind !== 'held') || !s.muted) return null;
      return to({ ...s, muted: false }, { do: 'unmute', id: s.call.id });

    case 'dtmf':
      if (s.kind !== 'active' || ev.tone.length !== 1 || !DTMF_TONES.includes(ev.tone)) return null;
      return to(s, { do: 'dtmf', id: s.call.id, tone: ev.tone });
  }
}

/** The call of `s` is over: back to idle with `reg`, remembering how it ended. */
function ended(
  m: Machine,
  s: State,
  reg: Reg,
  outcome: CallEnd['outcome'],
  by: CallEnd['by'],
  failure: Failure | null,
  now: number,
  effects: Effect[],
): Result {
  const call = callOf(s) as Peer;
  const since = 'since' in s ? s.since : 0;
  const secs = since ? Math.max(0, Math.floor((now - since) / 1000)) : 0;
  const lastEnd: CallEnd = { id: call.id, peer: call.name, by, outcome, secs, failure };
  return { m: { ...m, state: { kind: reg }, lastEnd }, effects };
}

/** What ends the call of `s` at sign-out. */
function endEffect(s: State): Effect {
  const call = callOf(s) as Peer;
  return s.kind === 'ringingIn' ? { do: 'reject', id: call.id, code: 480 } : { do: 'terminate', id: call.id };
}

/** mm:ss of a connected call (the test hook `call-timer`); hours keep counting in minutes. */
export function callTimer(m: Machine, now: number): string {
  const s = m.state;
  const since = s.kind === 'active' || s.kind === 'held' || s.kind === 'ending' ? s.since : 0;
  const inCall = callOf(s) !== null;
  const secs = since ? Math.max(0, Math.floor((now - since) / 1000)) : inCall ? 0 : m.lastEnd?.secs ?? 0;
  const mm = Math.floor(secs / 60);
  const ss = secs % 60;
  return `${String(mm).padStart(2, '0')}:${String(ss).padStart(2, '0')}`;
}
