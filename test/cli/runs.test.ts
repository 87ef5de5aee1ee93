// `dpoflow run | status | list | cancel | report` as a user runs them, against the real Temporal dev server and
// MinIO with workers in the test process: a run followed to completion, its status, listing and report; a
// second start of a running config follows the same run; cancellation; unknown runs and bad configs.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { shutdownRuntime } from '../../engine/runtime.ts';
import { pipelineConfig, pipelineStack } from '../support/pipeline.ts';
import { testTemporalAddress } from '../support/services.ts';

after(shutdownRuntime);

const cli = join(import.meta.dirname, '..', '..', 'bin', 'dpoflow.mjs');

test('run, status, list, report, cancel', { timeout: 300_000 }, async (t) => {
  const stack = await pipelineStack(t, 'cli-runs');
  const address = testTemporalAddress(t);
  if (!stack || !address) return;
  const { store, s3, queues } = stack;
  const dir = await mkdtemp(join(tmpdir(), 'dpoflow-cli-runs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const env = {
    ...process.env,
    TEMPORAL_ADDRESS: address,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    AWS_ENDPOINT_URL_S3: s3.endpoint,
  };
  const dpoflow = (...args: string[]) =>
    promisify(execFile)(process.execPath, [cli, ...args], { env, cwd: dir }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
  const writeConfig = async (name: string, training: object) => {
    const config = pipelineConfig(store, {
      endpoint: s3.endpoint,
      queues,
      heartbeatTimeoutSeconds: 5, // the in-process workers heartbeat at 0.8 × this, so cancellation is quick
      training: { max_steps: 20, eval_steps: 20, save_steps: 10, ...training },
      evaluation: { num_prompts: 4, samples_per_prompt: 1, max_new_tokens: 4 },
    });
    const file = join(dir, `${name}.json`);
    await writeFile(file, JSON.stringify({ ...config, name, temporal: { ...config.temporal, address } }));
    return file;
  };

  const config = await writeConfig('cli-run', {});
  const ran = await dpoflow('run', '--config', config);
  assert.equal(ran.code, 0, ran.stderr);
  const runId = ran.stdout.trim();
  assert.match(runId, /^cli-run-[0-9a-f]{12}$/);
  // Stages are sampled once a second, so short ones may pass unseen; those seen come in pipeline order.
  const order = ['prepare', 'reference', 'train', 'evaluate', 'done'];
  const seen = [...ran.stderr.matchAll(/^stage: (\w+)$/gm)].map((match) => order.indexOf(match[1]));
  assert.ok(
    seen.length > 0 && seen.every((index, i) => index >= 0 && (i === 0 || index > seen[i - 1])),
    ran.stderr,
  );
  assert.match(ran.stderr, /completed: model s3:\/\/.*\/model/);
  assert.match(ran.stderr, /evaluation: reward .* win rate .* KL .*report s3:\/\/.*report\.html/);

  const status = await dpoflow('status', runId, '--json');
  assert.equal(status.code, 0, status.stderr);
  const parsed = JSON.parse(status.stdout);
  assert.equal(parsed.status, 'COMPLETED');
  assert.equal(parsed.result.trained.steps, 20);

  const listed = await dpoflow('list', '--json');
  assert.equal(listed.code, 0, listed.stderr);
  const run = JSON.parse(listed.stdout).find((entry: { runId: string }) => entry.runId === runId);
  assert.equal(run?.name, 'cli-run');
  assert.equal(run?.stage, 'done');

  const saved = await dpoflow('report', runId, '--out', 'report.html');
  assert.equal(saved.code, 0, saved.stderr);
  assert.match(await readFile(join(dir, 'report.html'), 'utf8'), /<svg[\s\S]*Reward vs KL/);

  // A long run: a second start follows it instead of starting another, and cancel stops it.
  const long = await writeConfig('cli-long', { max_steps: 1_000_000, save_steps: 50, eval_steps: 1_000_000 });
  const detached = await dpoflow('run', '--config', long, '--detach');
  assert.equal(detached.code, 0, detached.stderr);
  const longId = detached.stdout.trim();
  const again = await dpoflow('run', '--config', long, '--detach');
  assert.equal(again.stdout.trim(), longId);
  assert.match(again.stderr, /already going/);
  const cancelled = await dpoflow('cancel', longId);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  const followed = await dpoflow('run', '--config', long, '--id', `${longId}-other`, '--detach');
  assert.equal(followed.code, 0);
  await dpoflow('cancel', `${longId}-other`);
  const deadline = Date.now() + 60_000;
  let longStatus = '';
  while (Date.now() < deadline && longStatus !== 'CANCELLED') {
    longStatus = JSON.parse((await dpoflow('status', longId, '--json')).stdout).status;
  }
  assert.equal(longStatus, 'CANCELLED');

  const unknown = await dpoflow('status', 'no-such-run');
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /no run with id "no-such-run"/);
  await writeFile(
    join(dir, 'bad.json'),
    JSON.stringify({ model: { uri: 'm' }, dataset: { train: 'd' }, training: { beta: 0 } }),
  );
  const bad = await dpoflow('run', '--config', 'bad.json');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /training\.beta: expected a number > 0, received 0/);
});
