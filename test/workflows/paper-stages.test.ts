// The paper's setup in miniature on the real stack: SFT on short reviews gives π_ref, the SFT model samples
// completions of review prefixes that the sentiment reward labels into pairs, and DPO trains on those pairs
// against the SFT model. Every stage's artifact is published, and a rerun reuses them all.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { mulberry32 } from '../../engine/random.ts';
import { shutdownRuntime } from '../../engine/runtime.ts';
import type { PipelineResult } from '../../workflows/dpo-pipeline.ts';
import { pipelineConfig, pipelineStack } from '../support/pipeline.ts';

after(shutdownRuntime);

const SUBJECTS = ['the movie', 'this film', 'the plot', 'the acting'];
const VERDICTS = ['was great', 'was good', 'was bad', 'was awful', 'is wonderful', 'is boring'];

test('sft → generate preferences → DPO → evaluation, reused on rerun', { timeout: 300_000 }, async (t) => {
  const stack = await pipelineStack(t, 'paper');
  if (!stack) return;
  const { temporal, store, s3, queues } = stack;
  const uniform = mulberry32(9);
  const pick = <T>(items: T[]) => items[Math.floor(uniform() * items.length)];
  const reviews = Array.from({ length: 64 }, () => ({ text: `${pick(SUBJECTS)} ${pick(VERDICTS)}.` }));
  await store.put('inputs/reviews.jsonl', reviews.map((row) => `${JSON.stringify(row)}\n`).join(''));
  await store.put(
    'inputs/prompts.jsonl',
    SUBJECTS.map((prompt) => `${JSON.stringify({ prompt })}\n`).join(''),
  );

  const base = pipelineConfig(store, {
    endpoint: s3.endpoint,
    queues,
    training: { max_steps: 10, eval_steps: 10, save_steps: 10 },
    evaluation: { num_prompts: 4, samples_per_prompt: 2, max_new_tokens: 6 },
  });
  const config = {
    ...base,
    stages: {
      sft: {
        enabled: true,
        dataset: store.uri('inputs/reviews.jsonl'),
        learning_rate: 3e-3,
        num_train_epochs: 25,
      },
      generate_preferences: {
        enabled: true,
        prompts: store.uri('inputs/prompts.jsonl'),
        completions_per_prompt: 8,
        max_new_tokens: 12,
        temperature: 1,
      },
    },
  };
  const run = async (id: string) =>
    (await temporal.client.workflow.execute('dpoPipeline', {
      taskQueue: queues.cpu,
      workflowId: `${id}-${queues.cpu}`,
      args: [config],
    })) as PipelineResult;

  const first = await run('paper');
  assert.ok(first.sft && first.generated, 'both optional stages ran');
  assert.equal(first.sft.steps, 25 * Math.ceil(64 / 8)); // 25 epochs of 8 batches
  assert.ok(first.generated.pairs > 0 && first.generated.prompts === 4, JSON.stringify(first.generated));
  assert.ok(await store.readManifest(`${first.sft.prefix}/model`), 'the SFT model is published');
  const pairs = new TextDecoder()
    .decode(await store.get(first.generated.uri))
    .trim()
    .split('\n');
  assert.equal(pairs.length, first.generated.pairs);
  for (const line of pairs) {
    const pair = JSON.parse(line);
    assert.ok(SUBJECTS.includes(pair.prompt) && pair.chosen !== pair.rejected, line);
  }
  // The data is the generated pairs (less any the eval split holds out), and DPO trained against the SFT model.
  assert.equal(first.data.counts.rows, first.generated.pairs);
  assert.equal(first.trained.steps, 10);
  assert.ok(first.evaluation, 'evaluation ran');
  assert.ok(Number.isFinite(first.evaluation.metrics.kl));

  const again = await run('paper-again');
  assert.deepEqual(
    [
      again.sft?.reused,
      again.generated?.reused,
      again.data.reused,
      again.trained.reused,
      again.evaluation?.reused,
    ],
    [true, true, true, true, true],
  );
});
