// Bundles each test/*.test.ts for Node (Node 20 cannot run TypeScript itself) into a
// temporary folder and runs them with node's test runner.
import { build } from 'esbuild';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const here = new URL('.', import.meta.url).pathname;
const tests = (await readdir(here)).filter((f) => f.endsWith('.test.ts')).map((f) => join(here, f));
const out = await mkdtemp(join(tmpdir(), 'wic-test-'));
try {
  await build({
    entryPoints: tests,
    outdir: out,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning',
  });
  const files = (await readdir(out)).filter((f) => f.endsWith('.test.mjs')).map((f) => join(out, f));
  const r = spawnSync(process.execPath, ['--test', ...files], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
} finally {
  await rm(out, { recursive: true, force: true });
}
