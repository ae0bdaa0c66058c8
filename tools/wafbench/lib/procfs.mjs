// Memory and CPU time of one process from Linux /proc. Parsing is split from reading so a
// captured file can be checked by hand (`node -e` with the text).
import fs from 'node:fs';

/** The `Vm*` and `Rss*` lines of /proc/<pid>/status text, in KiB: { VmRSS, VmHWM, RssAnon, ... }. */
export function parseStatus(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^((?:Vm|Rss)\w+):\s+(\d+) kB$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/**
 * utime + stime of /proc/<pid>/stat text, in seconds. The command name (field 2) may hold spaces
 * and parentheses, so fields are counted after its last ')'. USER_HZ is 100 on every Linux
 * architecture (`getconf CLK_TCK`).
 */
export function parseStatCpuSecs(text) {
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): utime is field 14, stime field 15
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

/** /proc/<pid>/status parsed, or null when the process is gone. */
export function readStatus(pid) {
  try {
    return parseStatus(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return null;
  }
}

/** CPU seconds used so far by `pid`, or null when it is gone. */
export function readCpuSecs(pid) {
  try {
    return parseStatCpuSecs(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}
