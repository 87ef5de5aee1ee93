// The pipeline survives its workers: a GPU worker process SIGKILLed mid-training is replaced, the attempt is
// retried and resumes from the newest checkpoint, and the model equals an uninterrupted run's byte for byte;
// cancelling a run stops training within seconds and leaves its checkpoints readable.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CancelledFailure, WorkflowFailedError } from '@temporalio/client';
import { shutdownRuntime } from '../../engine/runtime.ts';
import { openStore } from '../../store/index.ts';
import { loadTrainerCheckpoint } from '../../trainer/checkpoints.ts';
import type { PipelineResult } from '../../workflows/dpo-pipeline.ts';
import { checkpointSteps, pipelineConfig, pipelineStack } from '../support/pipeline.ts';
import { testTemporalAddress } from '../support/services.ts';

after(shutdownRuntime);

const cli = join(import.meta.dirname, '..', '..', 'bin', 'dpoflow.mjs');

async function until<T>(what: string, probe: () => Promise<T | undefined>, seconds = 60): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(100);
  }
  throw new Error(`timed out after ${seconds} s waiting for ${what}`);
}

// A hung workflow fails the test after this, instead of holding CI until its own limit.
const LIMIT = { timeout: 300_000 };

/** Services, inputs in MinIO, an in-process CPU worker, and GPU workers as `dpoflow worker` processes. */
async function workerProcesses(t: TestContext, purpose: string) {
  const stack = await pipelineStack(t, purpose, { gpuWorker: false });
  const address = testTemporalAddress(t);
  if (!stack || !address) return undefined;
  const { s3, queues } = stack;
  const children: ChildProcess[] = [];
  t.after(() => {
    for (const child of children) child.kill('SIGKILL');
  });
  const gpuWorker = (...extra: string[]) => {
    const child = spawn(
      process.execPath,
      [cli, 'worker', '--queues', 'gpu', '--gpu-queue', queues.gpu, '--address', address, ...extra],
      {
        env: { ...process.env, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    child.stderr!.on('data', () => {}); // drained, so the worker never blocks on a full pipe
    children.push(child);
    return child;
  };
  return { ...stack, gpuWorker };
}

test(
  'SIGKILL of the GPU worker mid-training: retried elsewhere, resumed, same model as one run',
  LIMIT,
  async (t) => {
    const setup = await workerProcesses(t, 'kill');
    if (!setup) return;
    const { temporal, opened, s3, queues, gpuWorker } = setup;
    // Separate store roots, so the uninterrupted run cannot reuse the killed run's artifacts.
    const config = (root: string) =>
      pipelineConfig(opened.store, {
        endpoint: s3.endpoint,
        queues,
        storeUri: `${opened.rootUri}/${root}`,
        heartbeatTimeoutSeconds: 3,
        training: { max_steps: 240, save_steps: 20, eval_steps: 240 },
      });
    const killedStore = openStore(`${opened.rootUri}/killed`, opened.options);

    const first = gpuWorker();
    const handle = await temporal.client.workflow.start('dpoPipeline', {
      taskQueue: queues.cpu,
      workflowId: `recovery-${queues.gpu}`,
      args: [config('killed')],
    });
    const killedAfter = await until('two checkpoints', async () => {
      const steps = await checkpointSteps(killedStore);
      return steps.length >= 2 ? steps.at(-1) : undefined;
    });
    first.kill('SIGKILL');
    gpuWorker();
    const killed = (await handle.result()) as PipelineResult;
    assert.equal(killed.trained.steps, 240);
    assert.ok(killedAfter < 240, `killed only after step ${killedAfter}`);

    const history = await handle.fetchHistory();
    const attempts = history.events!.flatMap((event) => {
      const started = event.activityTaskStartedEventAttributes;
      return started ? [started.attempt] : [];
    });
    assert.ok(
      attempts.some((attempt) => (attempt ?? 1) >= 2),
      `trainPolicy was not retried: attempts ${attempts}`,
    );

    const whole = (await temporal.client.workflow.execute('dpoPipeline', {
      taskQueue: queues.cpu,
      workflowId: `recovery-whole-${queues.gpu}`,
      args: [config('whole')],
    })) as PipelineResult;
    const wholeStore = openStore(`${opened.rootUri}/whole`, opened.options);
    assert.deepEqual(
      await killedStore.get(`${killed.trained.prefix}/model/model.safetensors`),
      await wholeStore.get(`${whole.trained.prefix}/model/model.safetensors`),
      'the resumed run ends with other weights than the uninterrupted one',
    );
    assert.deepEqual(
      await killedStore.get(`${killed.trained.prefix}/metrics.jsonl`),
      await wholeStore.get(`${whole.trained.prefix}/metrics.jsonl`),
    );
  },
);

test('cancelling a run stops training within seconds and leaves its checkpoints intact', LIMIT, async (t) => {
  const stack = await pipelineStack(t, 'cancel');
  if (!stack) return;
  const { temporal, store, s3, queues } = stack;
  const handle = await temporal.client.workflow.start('dpoPipeline', {
    taskQueue: queues.cpu,
    workflowId: `cancel-${queues.gpu}`,
    args: [
      pipelineConfig(store, {
        endpoint: s3.endpoint,
        queues,
        heartbeatTimeoutSeconds: 5,
        training: { max_steps: 1_000_000, save_steps: 25, eval_steps: 1_000_000 },
      }),
    ],
  });
  await until('a checkpoint', async () => ((await checkpointSteps(store)).length > 0 ? true : undefined));
  const cancelledAt = Date.now();
  await handle.cancel();
  const failure = await handle.result().catch((error: unknown) => error);
  const seconds = (Date.now() - cancelledAt) / 1000;
  assert.ok(failure instanceof WorkflowFailedError, String(failure));
  assert.ok(failure.cause instanceof CancelledFailure, String(failure.cause));
  assert.ok(seconds < 10, `training took ${seconds} s to stop`);

  // The workflow waits for the attempt to end (WAIT_CANCELLATION_COMPLETED): nothing trains any more, and every
  // checkpoint, the one saved on the way out included, loads.
  const steps = await checkpointSteps(store);
  await sleep(1000);
  assert.deepEqual(await checkpointSteps(store), steps, 'training went on after the run was cancelled');
  for await (const { key } of store.list('train/')) {
    const match = /^(train\/[0-9a-f]+\/checkpoints)\/checkpoint-(\d+)\/manifest\.json$/.exec(key);
    if (!match) continue;
    const checkpoint = await loadTrainerCheckpoint(store, match[1], Number(match[2]));
    assert.equal(checkpoint.state.global_step, Number(match[2]));
  }
});

test(
  'SIGTERM: the GPU worker cancels training at the end of its grace time (0 s here), which checkpoints the running step, and a new worker resumes',
  LIMIT,
  async (t) => {
    const setup = await workerProcesses(t, 'term');
    if (!setup) return;
    const { temporal, opened, s3, queues, gpuWorker } = setup;
    const { store } = opened;
    const first = gpuWorker('--grace', '0');
    const handle = await temporal.client.workflow.start('dpoPipeline', {
      taskQueue: queues.cpu,
      workflowId: `term-${queues.gpu}`,
      // save_steps beyond max_steps: the only checkpoint before the end is the one written on shutdown.
      args: [
        pipelineConfig(store, {
          endpoint: s3.endpoint,
          queues,
          heartbeatTimeoutSeconds: 3,
          training: { max_steps: 400, save_steps: 1000, eval_steps: 400 },
        }),
      ],
    });
    await until('training to pass step 30', async () => {
      const pending = (await handle.describe()).raw.pendingActivities ?? [];
      const payload = pending[0]?.heartbeatDetails?.payloads?.[0]?.data;
      if (!payload) return undefined;
      const details = JSON.parse(new TextDecoder().decode(payload));
      return details.stage === 'train' && details.step >= 30 ? true : undefined;
    });
    first.kill('SIGTERM');
    const exit = await new Promise<number | null>((resolve) => first.on('exit', resolve));
    assert.equal(exit, 0, 'the worker shuts down cleanly');
    const [saved] = await checkpointSteps(store);
    assert.ok(saved >= 30 && saved < 400, `checkpoint on shutdown at step ${saved}`);

    gpuWorker();
    const result = (await handle.result()) as PipelineResult;
    assert.equal(result.trained.steps, 400);
    const state = await store.getJson(`${result.trained.prefix}/trainer_state.json`);
    assert.equal((state as { global_step: number }).global_step, 400);
  },
);
