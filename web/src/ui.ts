/**
 * The page: finds the elements once and draws state into them. Owns: the DOM. Must not touch:
 * SIP, tokens, network.
 */
import { callOf, callStateText, callTimer, type Machine, type Peer } from './machine';
import type { RegState } from './phone';

function el<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`the page lacks #${id}`);
  return e as T;
}

export const ui = {
  who: el<HTMLElement>('who'),
  impu: el<HTMLElement>('impu'),
  signIn: el<HTMLButtonElement>('signin-button'),
  signOut: el<HTMLButtonElement>('signout-button'),
  regState: el<HTMLElement>('reg-state'),
  error: el<HTMLElement>('error'),
  notice: el<HTMLElement>('notice'),
  welcome: el<HTMLElement>('welcome'),
  call: el<HTMLElement>('incoming-call'),
  callFrom: el<HTMLElement>('call-title'),
  announce: el<HTMLElement>('announce'),
  callAccept: el<HTMLButtonElement>('call-accept'),
  callReject: el<HTMLButtonElement>('call-reject'),
  phone: el<HTMLElement>('phone'),
  callState: el<HTMLElement>('call-state'),
  callTimer: el<HTMLElement>('call-timer'),
  dialForm: el<HTMLFormElement>('dial-form'),
  dialAddress: el<HTMLInputElement>('dial-address'),
  callStart: el<HTMLButtonElement>('call-start'),
  keys: [...document.querySelectorAll<HTMLButtonElement>('.keypad button[data-key]')],
  inCall: el<HTMLElement>('in-call'),
  callPeer: el<HTMLElement>('call-peer'),
  dtmfSent: el<HTMLElement>('dtmf-sent'),
  callMute: el<HTMLButtonElement>('call-mute'),
  callHold: el<HTMLButtonElement>('call-hold'),
  callHangup: el<HTMLButtonElement>('call-hangup'),
  levelOut: el<HTMLMeterElement>('level-out'),
  levelIn: el<HTMLMeterElement>('level-in'),
  remoteAudio: el<HTMLAudioElement>('remote-audio'),
  messaging: el<HTMLElement>('messaging'),
  form: el<HTMLFormElement>('msg-form'),
  to: el<HTMLInputElement>('msg-to'),
  text: el<HTMLInputElement>('msg-text'),
  send: el<HTMLButtonElement>('msg-send'),
  formError: el<HTMLElement>('msg-form-error'),
  messages: el<HTMLOListElement>('messages'),
  empty: el<HTMLElement>('messages-empty'),
};

const REG_TEXT: Record<RegState, string> = {
  registered: 'Registered',
  registering: 'Registering…',
  unregistered: 'Not registered',
};

/** Writes text only when it changes, so live regions announce changes and nothing else. */
export function setText(e: HTMLElement, text: string): void {
  if (e.textContent !== text) e.textContent = text;
}

export function showRegState(s: RegState): void {
  setText(ui.regState, REG_TEXT[s]);
  ui.regState.dataset.state = s;
}

export function showSignedIn(impu: string | null): void {
  const inside = impu !== null;
  setText(ui.impu, impu ?? '');
  ui.who.hidden = !inside;
  ui.signOut.hidden = !inside;
  ui.signIn.hidden = inside;
  ui.welcome.hidden = inside;
  ui.messaging.hidden = !inside;
  ui.phone.hidden = !inside;
}

/** A level meter (0..1): its value and the `data-level` the tests read. */
export function showLevel(m: HTMLMeterElement, v: number): void {
  const x = Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0));
  m.value = x;
  m.dataset.level = x.toFixed(3);
}

export function clock(d: Date): string {
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function timeEl(d: Date): HTMLTimeElement {
  const t = document.createElement('time');
  t.dateTime = d.toISOString();
  t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  t.title = d.toLocaleString();
  return t;
}

function item(kind: 'in' | 'out', who: string, whoLabel: string, body: string, at: Date): HTMLLIElement {
  const li = document.createElement('li');
  li.className = `msg ${kind}`;
  const meta = document.createElement('p');
  meta.className = 'meta';
  const w = document.createElement('span');
  w.className = 'who';
  w.textContent = `${whoLabel} ${who}`;
  meta.append(w, ' ', timeEl(at));
  const b = document.createElement('p');
  b.className = 'body';
  b.textContent = body;
  li.append(meta, b);
  return li;
}

function append(li: HTMLLIElement): void {
  ui.messages.append(li);
  ui.empty.hidden = true;
  li.scrollIntoView({ block: 'nearest' });
}

export function addIncoming(from: string, fromName: string, body: string, at: Date): void {
  const li = item('in', fromName, 'From', body, at);
  li.dataset.from = from;
  append(li);
}

/** Adds a sent message; the returned function sets its delivery status. */
export function addOutgoing(to: string, body: string, at: Date): (status: string, state: 'sending' | 'delivered' | 'failed', code: number | null) => void {
  const li = item('out', to, 'To', body, at);
  li.dataset.to = to;
  const st = document.createElement('p');
  st.className = 'delivery';
  li.append(st);
  append(li);
  return (status, state, code) => {
    st.textContent = status;
    li.dataset.status = state;
    if (code !== null) li.dataset.code = String(code);
  };
}

/** The phone card and the ring notice, from the machine's state. */
export function showCall(machine: Machine, now: number, dtmfSent: string): void {
  const s = machine.state;
  const call = callOf(s);
  const text = callStateText(machine);
  setText(ui.callState, text);
  ui.callState.dataset.state = text;
  ui.phone.dataset.machine = s.kind;
  setText(ui.callTimer, callTimer(machine, now));
  ui.call.hidden = s.kind !== 'ringingIn';
  ui.inCall.hidden = !call || s.kind === 'ringingIn';
  ui.callStart.hidden = !!call && s.kind !== 'ringingIn';
  ui.callStart.disabled = s.kind !== 'registered';
  const up = s.kind === 'active' || s.kind === 'held';
  const muted = up && s.muted;
  ui.callMute.disabled = !up;
  ui.callMute.setAttribute('aria-pressed', String(muted));
  setText(ui.callMute, muted ? 'Unmute' : 'Mute');
  ui.callHold.disabled = !up;
  ui.callHold.setAttribute('aria-pressed', String(s.kind === 'held'));
  setText(ui.callHold, s.kind === 'held' ? 'Resume' : 'Hold');
  ui.callHangup.disabled = s.kind === 'ending';
  setText(ui.dtmfSent, dtmfSent ? `Tones sent: ${dtmfSent}` : '');
  if (call) {
    const what: Record<string, string> = {
      calling: `Calling ${call.name}…`,
      early: `Ringing ${call.name}…`,
      answering: `Connecting to ${call.name}…`,
      active: `In a call with ${call.name}${muted ? ' (muted)' : ''}`,
      held: `${call.name} is on hold`,
      ending: `Ending the call with ${call.name}…`,
    };
    setText(ui.callPeer, what[s.kind] ?? '');
  }
}

/** The ring notice of an incoming call; screen readers hear it through an assertive live region. */
export function showRinging(peer: Peer): void {
  setText(ui.callFrom, `Incoming call from ${peer.name}`);
  ui.call.dataset.from = peer.uri;
  ui.call.hidden = false;
  setText(ui.announce, `Incoming call from ${peer.name}`);
}

/** The ring notice goes; focus inside it moves to the call's controls or the address field. */
export function hideRinging(callGoesOn: boolean): void {
  setText(ui.announce, '');
  const hadFocus = ui.call.contains(document.activeElement);
  delete ui.call.dataset.from;
  ui.call.hidden = true;
  // After the page is drawn from the new state (the call's controls may appear only then).
  if (hadFocus) queueMicrotask(() => (callGoesOn ? ui.callHangup : ui.dialAddress).focus());
}

/** A dial-pad key with no call: the character goes into the address field at the caret. */
export function typeIntoAddress(k: string): void {
  const f = ui.dialAddress;
  const at = f.selectionStart ?? f.value.length;
  const to = f.selectionEnd ?? at;
  f.value = f.value.slice(0, at) + k + f.value.slice(to);
  f.setSelectionRange(at + 1, at + 1);
}
