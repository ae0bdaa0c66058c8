'use strict';
// Audio for the media tests: tone WAVs made with sox, and the measurement of a recording (a
// baresip dump, a browser capture): its dominant frequency (FFT over a stretch of the signal,
// Hann window, parabolic interpolation of the peak bin) and its RMS level, over the whole file
// or a time window, or as a timeline (hold/resume: where audio stops and comes back).
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const { promisify } = require('node:util');

const run = promisify(execFile);

/**
 * Writes a sine tone WAV with sox: { hz, rate (8000), channels (1), secs (30), vol (0.5) }.
 * baresip's aufile source needs the codec's own rate and channel count (opus/48000/2: 48 kHz
 * stereo; PCMA/PCMU: 8 kHz mono; G722 and AMR-WB: 16 kHz mono): see toneFor().
 */
async function makeTone(file, { hz, rate = 8000, channels = 1, secs = 30, vol = 0.5 }) {
  await run('sox', ['-n', '-r', String(rate), '-c', String(channels), '-b', '16', file,
    'synth', String(secs), 'sine', String(hz), 'vol', String(vol)], { timeout: 20000 });
  return file;
}

/** Raw A-law (8 kHz mono, no header) of a sine tone: sipp's rtp_stream plays it as PT 8. */
async function makeAlaw(file, { hz, secs = 30, vol = 0.5 }) {
  await run('sox', ['-n', '-r', '8000', '-c', '1', '-e', 'a-law', '-t', 'al', file,
    'synth', String(secs), 'sine', String(hz), 'vol', String(vol)], { timeout: 20000 });
  return file;
}

/** The sample format baresip's aufile needs for a codec ('PCMA/8000/1', 'opus/48000/2', ...). */
function formatFor(codec) {
  const [name, rate, ch] = codec.split('/');
  if (/^opus$/i.test(name)) return { rate: 48000, channels: 2 };
  if (/^G722$/i.test(name)) return { rate: 16000, channels: 1 }; // RFC 3551: clock 8000, audio 16 kHz
  return { rate: Number(rate) || 8000, channels: Number(ch) || 1 };
}

/**
 * A tone WAV for a codec, named after the codec and frequency, made once per directory;
 * 120 s long by default: baresip hangs up a call when its aufile source reaches the end.
 */
async function toneFor(dir, codec, hz, o = {}) {
  const f = formatFor(codec);
  const secs = o.secs || 120;
  const file = `${dir}/tone-${hz}hz-${f.rate}-${f.channels}ch-${secs}s.wav`;
  if (!fs.existsSync(file)) await makeTone(file, { hz, ...f, ...o, secs });
  return file;
}

/**
 * Reads a 16-bit PCM WAV (also one whose header sizes were never finalized, as in a dump of a
 * process that was killed): { rate, channels, samples: Float32Array (mono mix, -1..1) }.
 */
function readWav(file) {
  const b = fs.readFileSync(file);
  if (b.length < 12 || b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error(`${file}: not a WAV file (${b.length} bytes)`);
  }
  let off = 12;
  let fmt = null;
  let data = null;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    let size = b.readUInt32LE(off + 4);
    if (id === 'data') {
      if (size === 0 || off + 8 + size > b.length) size = b.length - off - 8; // not finalized
      data = b.subarray(off + 8, off + 8 + size);
      break;
    }
    if (id === 'fmt ') fmt = { format: b.readUInt16LE(off + 8), channels: b.readUInt16LE(off + 10), rate: b.readUInt32LE(off + 12), bits: b.readUInt16LE(off + 22) };
    off += 8 + size + (size & 1);
  }
  if (!fmt || !data) throw new Error(`${file}: no fmt or data chunk`);
  if (fmt.bits !== 16 || (fmt.format !== 1 && fmt.format !== 0xfffe)) throw new Error(`${file}: not 16-bit PCM (${JSON.stringify(fmt)})`);
  const n = Math.floor(data.length / (2 * fmt.channels));
  const samples = new Float32Array(n);
  for (let i = 0; i < n; i += 1) {
    let s = 0;
    for (let c = 0; c < fmt.channels; c += 1) s += data.readInt16LE((i * fmt.channels + c) * 2);
    samples[i] = s / fmt.channels / 32768;
  }
  return { rate: fmt.rate, channels: fmt.channels, samples };
}

function rmsOf(x, from = 0, to = x.length) {
  let s = 0;
  for (let i = from; i < to; i += 1) s += x[i] * x[i];
  return to > from ? Math.sqrt(s / (to - from)) : 0;
}

/** In-place iterative radix-2 FFT of (re, im), length a power of two. */
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i += 1) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    const wr = Math.cos(ang);
    const wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1;
      let ci = 0;
      for (let k = 0; k < len / 2; k += 1) {
        const ar = re[i + k + len / 2] * cr - im[i + k + len / 2] * ci;
        const ai = re[i + k + len / 2] * ci + im[i + k + len / 2] * cr;
        re[i + k + len / 2] = re[i + k] - ar;
        im[i + k + len / 2] = im[i + k] - ai;
        re[i + k] += ar;
        im[i + k] += ai;
        const t = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = t;
      }
    }
  }
}

/** Dominant frequency (Hz) of x[from..to): FFT of the largest power of two that fits, centred. */
function peakHz(x, rate, from = 0, to = x.length) {
  let n = 1;
  while (n * 2 <= Math.min(to - from, 65536)) n *= 2;
  if (n < 256) return null;
  const start = from + Math.floor((to - from - n) / 2);
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  for (let i = 0; i < n; i += 1) re[i] = x[start + i] * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)));
  fft(re, im);
  let best = 1;
  let bestMag = -1;
  const mag = (k) => Math.hypot(re[k], im[k]);
  for (let k = 1; k < n / 2 - 1; k += 1) {
    const m = mag(k);
    if (m > bestMag) { bestMag = m; best = k; }
  }
  // parabolic interpolation on log magnitudes
  const a = Math.log(mag(best - 1) + 1e-12);
  const b = Math.log(mag(best) + 1e-12);
  const c = Math.log(mag(best + 1) + 1e-12);
  const d = a - 2 * b + c;
  const shift = d !== 0 ? (0.5 * (a - c)) / d : 0;
  return ((best + shift) * rate) / n;
}

/**
 * Measures a WAV: { file, rate, channels, secs, rms, hz, activeFrom, activeTo } where rms and hz
 * are taken over the middle of the part that carries signal (first to last 100 ms window above
 * `floor` RMS, trimmed by `trim` of its length at each end), or over [o.from, o.to) seconds
 * when given. hz is null when that part is too short or silent.
 */
function analyse(file, o = {}) {
  const { rate, channels, samples } = readWav(file);
  const secs = samples.length / rate;
  const floor = o.floor ?? 0.01;
  let from;
  let to;
  let activeFrom = null;
  let activeTo = null;
  const w = Math.max(1, Math.floor(rate / 10));
  for (let i = 0; i + w <= samples.length; i += w) {
    if (rmsOf(samples, i, i + w) > floor) {
      if (activeFrom === null) activeFrom = i / rate;
      activeTo = (i + w) / rate;
    }
  }
  if (o.from !== undefined || o.to !== undefined) {
    from = Math.max(0, Math.floor((o.from ?? 0) * rate));
    to = Math.min(samples.length, Math.floor((o.to ?? secs) * rate));
  } else if (activeFrom !== null) {
    const trim = o.trim ?? 0.2;
    const a = activeFrom * rate;
    const z = activeTo * rate;
    from = Math.floor(a + (z - a) * trim);
    to = Math.floor(z - (z - a) * trim);
  } else {
    from = 0;
    to = samples.length;
  }
  const rms = rmsOf(samples, from, to);
  return {
    file, rate, channels, secs, rms, activeFrom, activeTo,
    hz: rms > floor ? peakHz(samples, rate, from, to) : null,
  };
}

/** [{ t, rms, hz }] per window of `step` seconds (hz null where the window is silent). */
function timeline(file, step = 0.5, floor = 0.01) {
  const { rate, samples } = readWav(file);
  const w = Math.floor(step * rate);
  const out = [];
  for (let i = 0; i + w <= samples.length; i += w) {
    const rms = rmsOf(samples, i, i + w);
    out.push({ t: i / rate, rms, hz: rms > floor ? peakHz(samples, rate, i, i + w) : null });
  }
  return out;
}

/** True when `got` is within `tol` (0.02 = 2 %) of `want`. */
const near = (got, want, tol = 0.02) => typeof got === 'number' && Math.abs(got - want) <= want * tol;

/** A one-line description of an analyse() result for assertion messages. */
const describe = (a) => `${a.file}: ${a.rate} Hz ${a.channels} ch, ${a.secs.toFixed(2)} s, ` +
  `signal ${a.activeFrom === null ? 'none' : `${a.activeFrom.toFixed(1)}-${a.activeTo.toFixed(1)} s`}, ` +
  `rms ${a.rms.toFixed(3)}, peak ${a.hz === null ? 'none' : `${a.hz.toFixed(1)} Hz`}`;

module.exports = { makeTone, makeAlaw, formatFor, toneFor, readWav, analyse, timeline, peakHz, near, describe };
