import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  callOf,
  callStateText,
  callTimer,
  initial,
  regOf,
  step,
  type Effect,
  type Event,
  type Failure,
  type Kind,
  type Machine,
} from '../src/machine';

const T0 = 1_000_000;

/** Runs events from `m`, each at T0 + i s unless given; returns the machine and all effects. */
function run(m: Machine, evs: (Event | [Event, number])[]): { m: Machine; effects: Effect[] } {
  const effects: Effect[] = [];
  evs.forEach((x, i) => {
    const [ev, at] = Array.isArray(x) ? x : [x, T0 + i * 1000];
    const r = step(m, ev, at);
    m = r.m;
    effects.push(...r.effects);
  });
  return { m, effects };
}

const ALL_EVENTS: Event[] = [
  { type: 'signedIn' },
  { type: 'registered' },
  { type: 'unregistered' },
  { type: 'connectionLost' },
  { type: 'signedOut' },
  { type: 'dial', id: 9, uri: 'sip:x@d', name: 'x' },
  { type: 'incoming', id: 9, uri: 'sip:x@d', name: 'x' },
  { type: 'progress', id: 1 },
  { type: 'connected', id: 1 },
  { type: 'ended', id: 1, failure: null },
  { type: 'mediaLost', id: 1 },
  { type: 'accept' },
  { type: 'reject' },
  { type: 'hangup' },
  { type: 'hold' },
  { type: 'resume' },
  { type: 'mute' },
  { type: 'unmute' },
  { type: 'dtmf', tone: '5' },
];

const OUT = { type: 'dial', id: 1, uri: 'sip:bob@ims.example', name: 'sip:bob@ims.example' } as const;
const IN = { type: 'incoming', id: 1, uri: 'sip:carol@ims.example', name: 'Carol (sip:carol@ims.example)' } as const;
const busy: Failure = { code: 486, reason: 'Busy Here', warning: '', cause: 'Busy' };

/** A machine in each state (call id 1 where there is a call). */
function reach(kind: Kind): Machine {
  const reg = run(initial(), [{ type: 'signedIn' }, { type: 'registered' }]).m;
  const evs: Record<Kind, Event[]> = {
    signedOut: [],
    registering: [{ type: 'signedIn' }],
    registered: [],
    calling: [OUT],
    early: [OUT, { type: 'progress', id: 1 }],
    ringingIn: [IN],
    answering: [IN, { type: 'accept' }],
    active: [OUT, { type: 'connected', id: 1 }],
    held: [OUT, { type: 'connected', id: 1 }, { type: 'hold' }],
    ending: [OUT, { type: 'connected', id: 1 }, { type: 'hangup' }],
  };
  const from = kind === 'signedOut' || kind === 'registering' ? initial() : reg;
  const m = run(from, evs[kind]).m;
  assert.equal(m.state.kind, kind, `reach(${kind})`);
  return m;
}

const KINDS: Kind[] = ['signedOut', 'registering', 'registered', 'calling', 'early', 'ringingIn', 'answering', 'active', 'held', 'ending'];

test('machine: sign-in, registration, loss of registration and sign-out', () => {
  let m = initial();
  assert.equal(m.state.kind, 'signedOut');
  assert.equal(callStateText(m), 'idle');
  m = step(m, { type: 'signedIn' }, T0).m;
  assert.equal(m.state.kind, 'registering');
  m = step(m, { type: 'registered' }, T0).m;
  assert.equal(m.state.kind, 'registered');
  assert.equal(regOf(m.state), 'registered');
  m = step(m, { type: 'unregistered' }, T0).m;
  assert.equal(m.state.kind, 'registering');
  m = step(m, { type: 'registered' }, T0).m;
  m = step(m, { type: 'connectionLost' }, T0).m;
  assert.equal(m.state.kind, 'registering');
  m = step(m, { type: 'signedOut' }, T0).m;
  assert.equal(m.state.kind, 'signedOut');
  assert.equal(m.ignored, 0);
});

test('machine: outgoing call: dial -> calling -> early (18x) -> active -> held -> active -> hang-up -> ending -> ended', () => {
  let m = reach('registered');
  let r = step(m, OUT, T0);
  assert.deepEqual(r.effects, [{ do: 'startCall', id: 1, uri: 'sip:bob@ims.example' }]);
  m = r.m;
  assert.equal(callStateText(m), 'calling');
  m = step(m, { type: 'progress', id: 1 }, T0).m;
  assert.equal(m.state.kind, 'early');
  assert.equal(callStateText(m), 'early');
  m = step(m, { type: 'progress', id: 1 }, T0).m; // a second 18x
  assert.equal(m.state.kind, 'early');
  m = step(m, { type: 'connected', id: 1 }, T0 + 1000).m;
  assert.equal(m.state.kind, 'active');
  assert.equal(callStateText(m), 'active');
  assert.equal(callTimer(m, T0 + 1000 + 65_400), '01:05');
  r = step(m, { type: 'hold' }, T0 + 2000);
  assert.deepEqual(r.effects, [{ do: 'hold', id: 1 }]);
  m = r.m;
  assert.equal(callStateText(m), 'held');
  r = step(m, { type: 'resume' }, T0 + 3000);
  assert.deepEqual(r.effects, [{ do: 'unhold', id: 1 }]);
  m = r.m;
  r = step(m, { type: 'hangup' }, T0 + 11_000);
  assert.deepEqual(r.effects, [{ do: 'terminate', id: 1 }]);
  m = r.m;
  assert.equal(m.state.kind, 'ending');
  assert.equal(callStateText(m), 'ended');
  m = step(m, { type: 'ended', id: 1, failure: null }, T0 + 11_200).m;
  assert.equal(m.state.kind, 'registered');
  assert.equal(callStateText(m), 'ended');
  assert.deepEqual(m.lastEnd, { id: 1, peer: 'sip:bob@ims.example', by: 'local', outcome: 'completed', secs: 10, failure: null });
  assert.equal(callTimer(m, T0 + 99_000), '00:10', 'the timer keeps the last call\'s length');
  assert.equal(m.ignored, 0);
});

test('machine: outgoing call answered without ringing first: calling -> active', () => {
  const { m } = run(reach('calling'), [{ type: 'connected', id: 1 }]);
  assert.equal(m.state.kind, 'active');
  assert.equal(m.state.kind === 'active' && m.state.muted, false);
});

test('machine: a second connected or progress in an active call is ignored', () => {
  assert.ok(step(reach('active'), { type: 'connected', id: 1 }, T0).ignored);
  assert.ok(step(reach('active'), { type: 'progress', id: 1 }, T0).ignored);
  assert.ok(step(reach('ringingIn'), { type: 'connected', id: 1 }, T0).ignored, 'not answered yet');
});

test('machine: outgoing call rejected (486) -> back to registered with the failure', () => {
  const { m } = run(reach('registered'), [OUT, { type: 'progress', id: 1 }, { type: 'ended', id: 1, failure: busy }]);
  assert.equal(m.state.kind, 'registered');
  assert.equal(m.lastEnd?.outcome, 'failed');
  assert.equal(m.lastEnd?.by, 'remote');
  assert.deepEqual(m.lastEnd?.failure, busy);
});

test('machine: the other side hangs up an active call -> completed', () => {
  const { m } = run(reach('active'), [[{ type: 'ended', id: 1, failure: null }, T0 + 5000]]);
  assert.equal(m.state.kind, 'registered');
  assert.equal(m.lastEnd?.outcome, 'completed');
  assert.equal(m.lastEnd?.by, 'remote');
});

test('machine: incoming call: ringing -> accept -> answering -> active; reject -> 486; caller cancels -> missed', () => {
  let m = reach('registered');
  m = step(m, IN, T0).m;
  assert.equal(m.state.kind, 'ringingIn');
  assert.equal(callStateText(m), 'ringing');
  let r = step(m, { type: 'accept' }, T0);
  assert.deepEqual(r.effects, [{ do: 'answer', id: 1 }]);
  assert.equal(r.m.state.kind, 'answering');
  assert.equal(callStateText(r.m), 'early');
  r = step(r.m, { type: 'connected', id: 1 }, T0);
  assert.equal(r.m.state.kind, 'active');

  r = step(reach('ringingIn'), { type: 'reject' }, T0);
  assert.deepEqual(r.effects, [{ do: 'reject', id: 1, code: 486 }]);
  assert.equal(r.m.state.kind, 'registered');
  assert.equal(r.m.lastEnd?.outcome, 'declined');

  r = step(reach('ringingIn'), { type: 'ended', id: 1, failure: null }, T0);
  assert.equal(r.m.state.kind, 'registered');
  assert.equal(r.m.lastEnd?.outcome, 'missed');
});

test('machine: the caller gives up while we answer -> missed', () => {
  const { m } = run(reach('answering'), [{ type: 'ended', id: 1, failure: null }]);
  assert.equal(m.state.kind, 'registered');
  assert.equal(m.lastEnd?.outcome, 'missed');
});

test('machine: an accepted offer the browser cannot take (488 from JsSIP) ends as failed', () => {
  const f: Failure = { code: null, reason: '', warning: '', cause: 'WebRTC Error' };
  const { m } = run(reach('answering'), [{ type: 'ended', id: 1, failure: f }]);
  assert.equal(m.state.kind, 'registered');
  assert.equal(m.lastEnd?.outcome, 'failed');
  assert.equal(m.lastEnd?.by, 'system');
  assert.deepEqual(m.lastEnd?.failure, f);
});

test('machine: an incoming call while in a call gets 486 Busy Here and changes nothing', () => {
  for (const k of ['calling', 'early', 'ringingIn', 'answering', 'active', 'held', 'ending'] as Kind[]) {
    const m = reach(k);
    const r = step(m, { type: 'incoming', id: 2, uri: 'sip:dave@ims.example', name: 'dave' }, T0);
    assert.deepEqual(r.effects, [{ do: 'reject', id: 2, code: 486 }], k);
    assert.deepEqual(r.m.state, m.state, k);
    assert.equal(r.ignored, null, k);
  }
  // while registering (no binding in place yet) a call can still ring
  assert.equal(step(reach('registering'), IN, T0).m.state.kind, 'ringingIn');
  // signed out: 480
  assert.deepEqual(step(initial(), IN, T0).effects, [{ do: 'reject', id: 1, code: 480 }]);
});

test('machine: hang-up in each state', () => {
  const want: Record<Kind, { kind: Kind; effects: Effect[] } | 'ignored'> = {
    signedOut: 'ignored',
    registering: 'ignored',
    registered: 'ignored',
    calling: { kind: 'ending', effects: [{ do: 'terminate', id: 1 }] },
    early: { kind: 'ending', effects: [{ do: 'terminate', id: 1 }] },
    ringingIn: { kind: 'registered', effects: [{ do: 'reject', id: 1, code: 486 }] },
    answering: { kind: 'ending', effects: [{ do: 'terminate', id: 1 }] },
    active: { kind: 'ending', effects: [{ do: 'terminate', id: 1 }] },
    held: { kind: 'ending', effects: [{ do: 'terminate', id: 1 }] },
    ending: 'ignored',
  };
  for (const k of KINDS) {
    const m = reach(k);
    const r = step(m, { type: 'hangup' }, T0 + 60_000);
    const w = want[k];
    if (w === 'ignored') {
      assert.equal(r.ignored, `hangup in ${k}`);
      assert.deepEqual(r.m.state, m.state);
      assert.equal(r.m.ignored, m.ignored + 1);
      assert.deepEqual(r.effects, []);
    } else {
      assert.equal(r.m.state.kind, w.kind, k);
      assert.deepEqual(r.effects, w.effects, k);
    }
  }
  // a call hung up before it connected ends as cancelled once JsSIP confirms
  const c = run(reach('early'), [{ type: 'hangup' }, { type: 'ended', id: 1, failure: null }]).m;
  assert.equal(c.lastEnd?.outcome, 'cancelled');
  assert.equal(c.lastEnd?.by, 'local');
});

test('machine: connection lost in each state', () => {
  for (const k of KINDS) {
    const m = reach(k);
    const r = step(m, { type: 'connectionLost' }, T0);
    if (k === 'signedOut') {
      assert.equal(r.ignored, 'connectionLost in signedOut');
      continue;
    }
    assert.equal(r.m.state.kind, 'registering', k);
    if (callOf(m.state)) {
      const ringing = k === 'ringingIn';
      assert.deepEqual(r.effects, [ringing ? { do: 'reject', id: 1, code: 480 } : { do: 'terminate', id: 1 }], k);
      assert.equal(r.m.lastEnd?.outcome, ringing ? 'missed' : k === 'ending' ? 'completed' : 'failed', k);
      if (!ringing && k !== 'ending') assert.equal(r.m.lastEnd?.failure?.cause, 'Connection Error', k);
    } else {
      assert.deepEqual(r.effects, [], k);
    }
  }
});

test('machine: sign-out in each state ends the call and forgets the last one', () => {
  for (const k of KINDS) {
    const m = reach(k);
    const r = step(m, { type: 'signedOut' }, T0);
    if (k === 'signedOut') {
      assert.ok(r.ignored);
      continue;
    }
    assert.equal(r.m.state.kind, 'signedOut', k);
    assert.equal(r.m.lastEnd, null, k);
    assert.equal(callStateText(r.m), 'idle', k);
    if (callOf(m.state)) assert.equal(r.effects.length, 1, k);
    else assert.deepEqual(r.effects, [], k);
  }
});

test('machine: registration changes during a call keep the call', () => {
  let m = reach('active');
  m = step(m, { type: 'unregistered' }, T0).m;
  assert.equal(m.state.kind, 'active');
  assert.equal(regOf(m.state), 'registering');
  m = step(m, { type: 'registered' }, T0).m;
  assert.equal(regOf(m.state), 'registered');
  // after the call, back to the registration it had
  const u = run(reach('active'), [{ type: 'unregistered' }, { type: 'ended', id: 1, failure: null }]).m;
  assert.equal(u.state.kind, 'registering');
});

test('machine: dialling needs a registration and no call', () => {
  for (const k of KINDS.filter((x) => x !== 'registered')) {
    const r = step(reach(k), OUT, T0);
    assert.equal(r.ignored, `dial in ${k}`);
    assert.deepEqual(r.effects, []);
  }
});

test('machine: mute, unmute and DTMF', () => {
  let m = reach('active');
  let r = step(m, { type: 'mute' }, T0);
  assert.deepEqual(r.effects, [{ do: 'mute', id: 1 }]);
  m = r.m;
  assert.equal(m.state.kind === 'active' && m.state.muted, true);
  assert.ok(step(m, { type: 'mute' }, T0).ignored, 'mute twice');
  m = step(m, { type: 'hold' }, T0).m;
  assert.equal(m.state.kind === 'held' && m.state.muted, true, 'hold keeps mute');
  m = step(m, { type: 'resume' }, T0).m;
  r = step(m, { type: 'unmute' }, T0);
  assert.deepEqual(r.effects, [{ do: 'unmute', id: 1 }]);
  assert.ok(step(r.m, { type: 'unmute' }, T0).ignored, 'unmute twice');

  for (const tone of '0123456789*#') {
    assert.deepEqual(step(reach('active'), { type: 'dtmf', tone }, T0).effects, [{ do: 'dtmf', id: 1, tone }]);
  }
  for (const tone of ['A', '', '12', 'x']) assert.ok(step(reach('active'), { type: 'dtmf', tone }, T0).ignored, tone);
  for (const k of KINDS.filter((x) => x !== 'active')) assert.ok(step(reach(k), { type: 'dtmf', tone: '1' }, T0).ignored, k);
  for (const k of KINDS.filter((x) => x !== 'active' && x !== 'held')) {
    assert.ok(step(reach(k), { type: 'mute' }, T0).ignored, `mute in ${k}`);
  }
});

test('machine: media lost ends an answered call with "Media Lost"', () => {
  for (const k of ['answering', 'active', 'held'] as Kind[]) {
    const r = step(reach(k), { type: 'mediaLost', id: 1 }, T0);
    assert.deepEqual(r.effects, [{ do: 'terminate', id: 1 }], k);
    assert.equal(r.m.state.kind, 'registered', k);
    assert.equal(r.m.lastEnd?.failure?.cause, 'Media Lost', k);
  }
  assert.ok(step(reach('calling'), { type: 'mediaLost', id: 1 }, T0).ignored);
});

test('machine: events of another call are ignored', () => {
  for (const k of ['calling', 'early', 'ringingIn', 'answering', 'active', 'held', 'ending'] as Kind[]) {
    const m = reach(k);
    for (const ev of [
      { type: 'progress', id: 2 },
      { type: 'connected', id: 2 },
      { type: 'ended', id: 2, failure: null },
      { type: 'mediaLost', id: 2 },
    ] as Event[]) {
      const r = step(m, ev, T0);
      assert.ok(r.ignored, `${ev.type} of call 2 in ${k}`);
      assert.deepEqual(r.m.state, m.state);
    }
  }
});

test('machine: every event in every state: never throws; ignored ones change nothing but the count', () => {
  let legal = 0;
  let illegal = 0;
  for (const k of KINDS) {
    for (const ev of ALL_EVENTS) {
      const m = reach(k);
      const r = step(m, ev, T0);
      if (r.ignored) {
        illegal += 1;
        assert.deepEqual(r.m.state, m.state, `${ev.type} in ${k}`);
        assert.equal(r.m.lastEnd, m.lastEnd);
        assert.equal(r.m.ignored, m.ignored + 1);
        assert.equal(r.m.lastIgnored, `${ev.type} in ${k}`);
        assert.deepEqual(r.effects, []);
      } else {
        legal += 1;
        assert.equal(r.m.ignored, m.ignored);
      }
    }
  }
  assert.ok(legal > 40 && illegal > 60, `legal ${legal}, illegal ${illegal}`);
});

test('machine: call-state text for each state', () => {
  const want: Record<Kind, string> = {
    signedOut: 'idle', registering: 'idle', registered: 'idle', calling: 'calling', early: 'early', ringingIn: 'ringing',
    answering: 'early', active: 'active', held: 'held', ending: 'ended',
  };
  for (const k of KINDS) assert.equal(callStateText(reach(k)), want[k], k);
});
