// The server commands refuse bad usage with exit code 2 and a message naming the problem, before they start.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'dpoflow.mjs');
const dpoflow = (env: Record<string, string | undefined>, ...args: string[]) =>
  promisify(execFile)(process.execPath, [cli, ...args], { env: { ...process.env, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );

test('api without tokens, worker with an unknown queue, dev with a bad port: exit 2 naming the problem', async () => {
  const api = await dpoflow({ DPOFLOW_API_TOKENS: '' }, 'api', '--port', '0');
  assert.equal(api.code, 2);
  assert.match(api.stderr, /no API tokens: set DPOFLOW_API_TOKENS or --tokens-file/);
  const worker = await dpoflow({}, 'worker', '--queues', 'tpu');
  assert.equal(worker.code, 2);
  assert.match(worker.stderr, /--queues: expected cpu, gpu or cpu,gpu, received "tpu"/);
  const dev = await dpoflow({}, 'dev', '--api-port', 'x');
  assert.equal(dev.code, 2);
  assert.match(dev.stderr, /--api-port: expected a port 0-65535, received "x"/);
  const help = await dpoflow({}, 'run', '--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: dpoflow run --config FILE/);
});
