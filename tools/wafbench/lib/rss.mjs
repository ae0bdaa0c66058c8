// Samples a process's resident memory (VmRSS) and CPU time every `intervalMs` in a worker
// thread (./rss-worker.mjs) and summarises them between marks the benchmark sets.
import { Worker } from 'node:worker_threads';
import { readStatus, readCpuSecs } from './procfs.mjs';

export class RssSampler {
  /**
   * @param {number} pid the process to watch
   * @param {object} o { intervalMs (100), limitKib (0: none), onLimit(rssKib), onGone() }
   */
  constructor(pid, o = {}) {
    this.pid = pid;
    this.intervalMs = o.intervalMs || 100;
    this.samples = null;
    this.worker = new Worker(new URL('./rss-worker.mjs', import.meta.url), {
      workerData: { pid, intervalMs: this.intervalMs, limitKib: o.limitKib || 0 },
    });
    this.worker.on('message', (m) => {
      if (m.type === 'limit' && o.onLimit) o.onLimit(m.rssKib);
      if (m.type === 'gone' && o.onGone) o.onGone();
      if (m.type === 'samples') this.samples = m.samples;
    });
    this.done = new Promise((resolve) => this.worker.once('exit', resolve));
  }

  /** A reading now, taken on the calling thread: { at, rssKib, hwmKib, cpuS } (null if gone). */
  now() {
    const st = readStatus(this.pid);
    if (!st) return null;
    return { at: Date.now(), rssKib: st.VmRSS, hwmKib: st.VmHWM, rssAnonKib: st.RssAnon, cpuS: readCpuSecs(this.pid) };
  }

  /** Stops sampling; resolves with every sample [unix ms, VmRSS KiB, CPU s]. */
  async stop() {
    if (this.samples) return this.samples;
    this.worker.postMessage('stop');
    await this.done;
    return this.samples || [];
  }
}

/**
 * What the samples say between `from` and `to` (unix ms): count, mean interval, peak VmRSS and
 * when it was reached.
 */
export function summarise(samples, from, to) {
  const s = samples.filter(([t]) => t >= from && t <= to);
  if (!s.length) return { samples: 0 };
  let peak = s[0];
  for (const x of s) if (x[1] > peak[1]) peak = x;
  return {
    samples: s.length,
    meanIntervalMs: s.length > 1 ? Math.round((s[s.length - 1][0] - s[0][0]) / (s.length - 1)) : null,
    peakRssKib: peak[1],
    peakAtS: (peak[0] - from) / 1000,
  };
}

/** One point per `stepMs` (the highest VmRSS within it), for the JSON report: [s since from, KiB]. */
export function series(samples, from, stepMs = 1000) {
  const out = new Map();
  for (const [t, rss] of samples) {
    if (t < from) continue;
    const k = Math.floor((t - from) / stepMs);
    out.set(k, Math.max(out.get(k) || 0, rss));
  }
  return [...out.entries()].sort((a, b) => a[0] - b[0]).map(([k, rss]) => [(k * stepMs) / 1000, rss]);
}
