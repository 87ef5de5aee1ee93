// `dpoflow dev`: the whole stack from one command — Temporal dev server, workers, API — reachable as printed,
// and stopped cleanly by Ctrl-C.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'dpoflow.mjs');

test('dpoflow dev starts Temporal, workers and the API, and stops on SIGINT', {
  timeout: 120_000,
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dpoflow-dev-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const child = spawn(
    process.execPath,
    [cli, 'dev', '--dir', dir, '--api-port', '0', '--temporal-port', '0', '--ui-port', '0'],
    { env: { ...process.env, DPOFLOW_API_TOKENS: 'dev-token' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const api = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const match = /API\s+(http:\/\/127\.0\.0\.1:\d+)\s+token dev-token/.exec(stdout);
      if (match) resolve(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`dev exited ${code}:\n${stdout}\n${stderr}`)));
  });
  assert.match(stdout, /Temporal\s+127\.0\.0\.1:\d+\s+web UI http:\/\/127\.0\.0\.1:\d+/);
  assert.match(stdout, /workers\s+dpoflow-cpu, dpoflow-gpu/);
  assert.equal((await fetch(`${api}/readyz`)).status, 200);
  const listed = await fetch(`${api}/v1/runs`, { headers: { authorization: 'Bearer dev-token' } });
  assert.equal(listed.status, 200);
  assert.deepEqual(((await listed.json()) as { runs: unknown[] }).runs, []);
  await stat(join(dir, 'temporal.db')); // the history is a file under --dir

  child.kill('SIGINT');
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, stderr);
});
