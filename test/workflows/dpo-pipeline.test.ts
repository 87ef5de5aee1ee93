// dpoPipeline on the real Temporal dev server and MinIO: a tiny model and synthetic pairs in S3, a CPU-queue and
// a GPU-queue worker; every artifact published with a manifest; a rerun reuses every stage; a new β reuses the
// data and the reference cache and retrains only; training runs on the GPU queue alone; bad rows fail fast.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import protos from '@temporalio/proto';
import type { DpoflowConfigInput } from '../../config/schema.ts';
import { shutdownRuntime } from '../../engine/runtime.ts';
import type { PipelineResult } from '../../workflows/dpo-pipeline.ts';
import type { SweepResult } from '../../workflows/sweep.ts';
import { pipelineConfig, pipelineStack, preferenceRows } from '../support/pipeline.ts';

after(shutdownRuntime);

const historiesDir = join(import.meta.dirname, '..', 'fixtures', 'histories');

// A hung workflow fails the test after this, instead of holding CI until its own limit.
const LIMIT = { timeout: 300_000 };

test(
  'dpoPipeline: prepare → reference → train, cached on rerun, retrains only for a new beta',
  LIMIT,
  async (t) => {
    const stack = await pipelineStack(t, 'pipeline');
    if (!stack) return;
    const { temporal, store, s3, queues } = stack;
    await store.put(
      'inputs/bad.jsonl',
      `${preferenceRows(3)}{"prompt": "+a", "chosen": 7}\n{"chosen": "x"}\n`,
    );
    const config = (training: DpoflowConfigInput['training'], train?: string) =>
      pipelineConfig(store, {
        endpoint: s3.endpoint,
        queues,
        train,
        training: { max_steps: 30, eval_steps: 30, save_steps: 10, ...training },
        evaluation: { num_prompts: 8, samples_per_prompt: 2, max_new_tokens: 8 },
      });
    let runs = 0;
    const run = async (input: ReturnType<typeof config>) => {
      const workflowId = `pipeline-${queues.cpu}-${++runs}`;
      const result = (await temporal.client.workflow.execute('dpoPipeline', {
        taskQueue: queues.cpu,
        workflowId,
        args: [input],
      })) as PipelineResult;
      return { result, workflowId };
    };

    const first = await run(config({ beta: 0.1 }));
    const { data, reference, trained } = first.result;
    assert.equal(data.reused, false);
    assert.equal(reference?.reused, false);
    assert.equal(trained.reused, false);
    assert.equal(data.counts.train + data.counts.eval, 120);
    assert.equal(trained.steps, 30);
    for (const prefix of [data.prefix, reference!.prefix, `${trained.prefix}/model`]) {
      const manifest = await store.readManifest(prefix);
      assert.ok(manifest, `${prefix} has no manifest`);
      for (const file of manifest.files)
        assert.ok(await store.exists(`${prefix}/${file.path}`), `${prefix}/${file.path}`);
    }
    const exported = (await store.readManifest(`${trained.prefix}/model`))!.files.map((file) => file.path);
    for (const name of ['config.json', 'model.safetensors', 'tokenizer.json'])
      assert.ok(exported.includes(name), `model/ lacks ${name}: ${exported}`);
    assert.ok(trained.evaluation!['eval_rewards/accuracies'] > 0.8, JSON.stringify(trained.evaluation));
    assert.equal((await store.get(trained.metricsUri)).length > 0, true);

    // Routing: training was scheduled on the GPU queue, everything else on the CPU queue.
    const history = await temporal.client.workflow.getHandle(first.workflowId).fetchHistory();
    if (process.env.DPOFLOW_RECORD_HISTORIES === '1') {
      // Refreshes the history test/workflows/replay.test.ts replays against the current workflow code.
      // Protobuf binary: @temporalio/common's historyToJSON fails with the protobufjs copy npm installs beside it.
      const { History } = protos.temporal.api.history.v1;
      await writeFile(
        join(historiesDir, 'dpo-pipeline.binpb'),
        History.encode(History.fromObject(history)).finish(),
      );
    }
    const scheduled = history.events!.flatMap((event) => {
      const attributes = event.activityTaskScheduledEventAttributes;
      return attributes ? [[attributes.activityType!.name, attributes.taskQueue!.name]] : [];
    });
    assert.deepEqual(scheduled, [
      ['prepareData', queues.cpu],
      ['cacheReferenceLogprobs', queues.cpu],
      ['trainPolicy', queues.gpu],
      ['evaluatePolicy', queues.gpu],
    ]);

    // Evaluation: samples from both models scored by the built-in reward, KL of the policy's own samples.
    const { evaluation } = first.result;
    assert.ok(evaluation);
    assert.equal(evaluation.metrics.prompts, 8);
    assert.equal(
      evaluation.metrics.preference['eval_rewards/accuracies'],
      trained.evaluation!['eval_rewards/accuracies'],
    );
    assert.ok(evaluation.metrics.kl > 0, `KL(π‖π_ref) estimate ${evaluation.metrics.kl}`);
    assert.ok(evaluation.metrics.win_rate >= 0 && evaluation.metrics.win_rate <= 1);
    const samples = new TextDecoder()
      .decode(await store.get(`${evaluation.prefix}/samples.jsonl`))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    assert.equal(samples.length, 2 * 8 * 2);
    assert.ok(samples.every((sample) => Number.isFinite(sample.reward)));
    const report = new TextDecoder().decode(await store.get(`${evaluation.prefix}/report.html`));
    assert.match(report, /<svg[^>]*>[\s\S]*<path d="M/);

    const again = (await run(config({ beta: 0.1 }))).result;
    assert.deepEqual(
      [again.data.reused, again.reference?.reused, again.trained.reused, again.evaluation?.reused],
      [true, true, true, true],
      'a rerun reuses every stage',
    );
    assert.deepEqual(again.evaluation?.metrics, evaluation.metrics);

    // A damaged artifact is not trusted: a file its manifest lists is gone, so that stage is rebuilt.
    await store.delete(`${data.prefix}/stats.json`);
    const repaired = (await run(config({ beta: 0.1 }))).result;
    assert.deepEqual([repaired.data.reused, repaired.reference?.reused], [false, true]);
    assert.ok(await store.exists(`${data.prefix}/stats.json`));
    assert.equal(again.trained.modelUri, trained.modelUri);

    const newBeta = (await run(config({ beta: 0.2 }))).result;
    assert.deepEqual(
      [newBeta.data.reused, newBeta.reference?.reused, newBeta.trained.reused],
      [true, true, false],
    );
    assert.notEqual(newBeta.trained.modelUri, trained.modelUri);

    // A sweep over β runs one child pipeline per value (both trained above, so reused) and picks the best.
    const swept = (await temporal.client.workflow.execute('sweep', {
      taskQueue: queues.cpu,
      workflowId: `sweep-${queues.cpu}`,
      args: [
        { config: config({}), grid: { 'training.beta': [0.1, 0.2] }, metric: 'eval_rewards/accuracies' },
      ],
    })) as SweepResult;
    assert.deepEqual(
      swept.trials.map((trial) => [trial.workflowId, trial.settings, trial.result.trained.reused]),
      [
        [`sweep-${queues.cpu}/trial-0`, { 'training.beta': 0.1 }, true],
        [`sweep-${queues.cpu}/trial-1`, { 'training.beta': 0.2 }, true],
      ],
    );
    assert.equal(swept.best.value, Math.max(...swept.trials.map((trial) => trial.value!)));
    const memo = (await temporal.client.workflow.getHandle(first.workflowId).describe()).memo;
    assert.deepEqual(memo, {
      name: 'pipeline-test',
      model: store.uri('inputs/model'),
      dataset: store.uri('inputs/pairs.jsonl'),
      stage: 'done',
    });

    const invalid = await run({ ...config({ beta: 0.1 }), training: { beta: -1 } } as never).catch(
      (error: unknown) => error,
    );
    assert.ok(invalid instanceof WorkflowFailedError);
    assert.ok(invalid.cause instanceof ApplicationFailure);
    assert.equal(invalid.cause.type, 'ConfigError');
    assert.match(invalid.cause.message, /training\.beta: expected a number > 0, received -1/);

    const keys = async () => {
      const found: string[] = [];
      for await (const { key } of store.list('data/')) found.push(key);
      return found;
    };
    const before = await keys();
    const failure = await run(config({ beta: 0.1 }, 'inputs/bad.jsonl')).catch((error: unknown) => error);
    assert.deepEqual(await keys(), before, 'the failed preparation left objects behind');
    assert.ok(failure instanceof WorkflowFailedError);
    assert.ok(failure.cause instanceof ActivityFailure);
    const cause = failure.cause.cause;
    assert.ok(cause instanceof ApplicationFailure);
    assert.equal(cause.type, 'DatasetError');
    assert.equal(cause.nonRetryable, true);
    assert.match(
      cause.message,
      /inputs\/bad\.jsonl: 2 invalid row\(s\).*\n {2}line 4: chosen.*\n {2}line 5/s,
    );
    assert.ok(cause.message.startsWith('s3://'), cause.message);
  },
);
