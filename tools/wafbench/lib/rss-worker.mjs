// The memory sampler's thread: reads /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (CPU time)
// every `intervalMs`. It runs in a worker thread so that the flood, which keeps the main event
// loop busy, cannot delay or thin out the samples.
import { parentPort, workerData } from 'node:worker_threads';
import { readStatus, readCpuSecs } from './procfs.mjs';

const { pid, intervalMs, limitKib } = workerData;
const samples = []; // [unix ms, VmRSS KiB, CPU s]
let limitSent = false;
let gone = false;

function sample() {
  const st = readStatus(pid);
  if (!st) {
    if (!gone) parentPort.postMessage({ type: 'gone', at: Date.now() });
    gone = true;
    return;
  }
  samples.push([Date.now(), st.VmRSS, readCpuSecs(pid)]);
  if (limitKib > 0 && st.VmRSS > limitKib && !limitSent) {
    limitSent = true;
    parentPort.postMessage({ type: 'limit', at: Date.now(), rssKib: st.VmRSS });
  }
}

const timer = setInterval(sample, intervalMs);
sample();
parentPort.on('message', (m) => {
  if (m === 'stop') {
    clearInterval(timer);
    sample();
    parentPort.postMessage({ type: 'samples', samples });
    parentPort.close();
  }
});
