// The readable report: one "label  value" line per figure, like tools/loadgen's. The same
// figures go to the JSON file (--out) as they are.

const mb = (kib) => (kib === null || kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(1)} MB`);

/** The report text of `r` (the object written as JSON). */
export function text(r) {
  const out = [];
  const line = (label, value) => out.push(`${label.padEnd(24)} ${value}`);
  const f = r.flood;
  const m = r.memory;
  out.push(`=== wafbench${r.label ? ` (${r.label})` : ''}: anonymous WAF requests while a person signs in`);
  line('gateway', `${r.imsgw.bin} (pid ${r.imsgw.pid})`);
  line('asked', `${r.config.count} requests, at most ${r.config.maxSecs} s, ${r.config.concurrency} in flight, ` +
    `${r.config.addresses} source addresses, state ${r.config.stateKb} KB`);
  line('mix', r.config.mix);
  if (f) flood(line, f);
  else line('flood', 'not run');
  if (m) memory(line, m);
  else line('memory', 'not measured');
  const p = r.person;
  line('person', `${p.user}: ${p.ok ? 'OK' : 'FAILED'}, started ${p.startedDuringFlood ? 'during' : 'AFTER'} the flood ` +
    `(${p.startedAtRequests} requests sent, ${p.startedAtS} s in)${p.endedDuringFlood ? ', done before it ended' : ''}`);
  for (const s of p.steps) {
    const d = s.ok ? Object.entries(s.detail || {}).map(([k, v]) => `${k} ${Array.isArray(v) ? v.join('>') : v}`).join(', ') : s.error;
    line(`  ${s.name}`, `${s.ok ? 'ok' : 'FAILED'} in ${s.ms} ms${d ? `: ${d}` : ''}`);
  }
  for (const [k, v] of Object.entries(r.metrics || {})) line(`  metric`, `${k} ${v}`);
  line('gateway exit', r.imsgw.exit ? JSON.stringify(r.imsgw.exit) : 'n/a');
  if (r.problems.length) for (const x of r.problems) line('PROBLEM', x);
  line('result', r.ok ? 'PASS (the person signed in and registered; the gateway stayed up)' : 'FAIL');
  return `${out.join('\n')}\n`;
}

function flood(line, f) {
  line('flood', `${f.sent} sent, ${f.answered} answered, ${f.failed} without answer, in ${f.durationS} s ` +
    `= ${f.requestsPerS} requests/s (stopped by: ${f.stopReason}), ${f.mbSent} MB sent`);
  if (f.latencyMs) line('latency (ms)', lat(f.latencyMs));
  for (const [name, ep] of Object.entries(f.endpoints)) {
    const codes = Object.entries(ep.status).map(([c, n]) => `${c} x ${n}`).join(', ') || 'none';
    line(`  ${name}`, `${ep.sent} sent: ${codes}${ep.latencyMs ? `; ${lat(ep.latencyMs)} ms` : ''}`);
  }
}

function memory(line, m) {
  line('memory: baseline', `${mb(m.baselineKib)} VmRSS before the flood`);
  line('memory: peak', `${mb(m.peakKib)} VmRSS, ${m.peakAtS} s after the flood started (${m.samples} samples, ` +
    `one per ${m.meanIntervalMs} ms); VmHWM ${mb(m.hwmKib)}`);
  line('memory: flood end', `${mb(m.endKib)} VmRSS (+${mb(m.endKib - m.baselineKib)}, ` +
    `${m.bytesPerRequest === null ? 'n/a' : m.bytesPerRequest} bytes per request answered)`);
  if (m.settleSecs > 0) line(`memory: ${m.settleSecs} s later`, `${mb(m.afterSettleKib)} VmRSS`);
  line('gateway CPU', `${m.cpuFloodS} s during the flood`);
}

const lat = (l) => `p50 ${l.p50}  p99 ${l.p99}  max ${l.max}`;
