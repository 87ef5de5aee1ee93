// trainDpo's behaviour beyond parity: it learns a preference rule, resumes bit-identically from a checkpoint
// in the artifact store (file and MinIO), trains LoRA adapters that merge into the exported weights, and stops
// cleanly on divergence, cancellation and unusable input.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { z } from 'zod';
import { type TrainingConfig, trainingSchema } from '../../config/schema.ts';
import type { CausalLmSpec } from '../../engine/models/hf-config.ts';
import { parseModelConfig } from '../../engine/models/hf-config.ts';
import { PairScorer } from '../../engine/models/scorer.ts';
import { tinyConfig, tinyParameters } from '../../engine/models/tiny.ts';
import type { ParameterSet } from '../../engine/parameters.ts';
import { mulberry32 } from '../../engine/random.ts';
import { shutdownRuntime } from '../../engine/runtime.ts';
import type { TrainingPair } from '../../trainer/batches.ts';
import {
  listTrainerCheckpoints,
  loadLatestTrainerCheckpoint,
  saveTrainerCheckpoint,
} from '../../trainer/checkpoints.ts';
import { trainDpo } from '../../trainer/dpo-trainer.ts';
import { TrainingCancelledError, TrainingDivergedError, TrainingSetupError } from '../../trainer/loop.ts';
import { scoreReference } from '../../trainer/reference.ts';
import type { LogEntry, TrainerCheckpoint } from '../../trainer/state.ts';
import { backendNames, openTestStore } from '../store/backends.ts';

after(shutdownRuntime);

const PAD = 258;
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

/**
 * A rule that needs the prompt: a '+' prompt prefers a response of vowels, a '−' prompt one of consonants, so
 * no response is better on its own and the policy must learn to read the marker.
 */
function markerPairs(count: number, seed: number): TrainingPair[] {
  const uniform = mulberry32(seed);
  const pick = (letters: string) => letters.charCodeAt(Math.floor(uniform() * letters.length));
  return Array.from({ length: count }, () => {
    const positive = uniform() < 0.5;
    const prompt = [
      256,
      positive ? 43 : 45,
      ...Array.from({ length: 1 + Math.floor(uniform() * 4) }, () => pick(LETTERS)),
    ];
    const length = 2 + Math.floor(uniform() * 4);
    const vowels = [...Array.from({ length }, () => pick('aeiou')), 257];
    const consonants = [...Array.from({ length }, () => pick('bcdfghklmnpqrstvwxz')), 257];
    return {
      prompt_input_ids: prompt,
      chosen_input_ids: positive ? vowels : consonants,
      rejected_input_ids: positive ? consonants : vowels,
    };
  });
}

function tinyModel(family: 'gpt2' | 'llama'): { spec: CausalLmSpec; parameters: ParameterSet } {
  const raw = tinyConfig({ family, seed: 1 });
  return { spec: parseModelConfig(raw), parameters: tinyParameters(raw, 1) };
}

function withReference(
  model: { spec: CausalLmSpec; parameters: ParameterSet },
  pairs: TrainingPair[],
): Promise<TrainingPair[]> {
  return scoreReference(model.spec, model.parameters, pairs, { batchSize: 64 });
}

function training(settings: z.input<typeof trainingSchema>): TrainingConfig {
  return trainingSchema.parse({ learning_rate: 1e-3, per_device_train_batch_size: 8, ...settings });
}

const gpt2 = tinyModel('gpt2');
const train = await withReference(gpt2, markerPairs(256, 7));
const held = await withReference(gpt2, markerPairs(48, 8));

test('learning: held-out rewards/accuracies rises from about 0.5 to above 0.9', async () => {
  const logged: LogEntry[] = [];
  await trainDpo({
    ...gpt2,
    training: training({ max_steps: 30, eval_steps: 1, logging_steps: 5, lr_scheduler_type: 'constant' }),
    seed: 42,
    train,
    eval: held,
    padTokenId: PAD,
    onLog: (entry) => {
      if ('eval_loss' in entry) logged.push(entry);
    },
  });
  const accuracy = logged.map((entry) => entry['eval_rewards/accuracies']);
  assert.equal(accuracy.length, 30);
  assert.ok(accuracy[0] > 0.25 && accuracy[0] < 0.75, `after one step: ${accuracy[0]}`);
  assert.ok(accuracy.at(-1)! > 0.9, `after 30 steps: ${accuracy.at(-1)}`);
  assert.ok(logged.at(-1)!.eval_loss < logged[0].eval_loss - 0.1, 'eval_loss falls');
});

describe('exact resume from a checkpoint in the store', () => {
  for (const backend of backendNames) {
    test(`${backend}: cancel after step 5 (checkpointed on the way out), resume, same weights and logs as one run`, async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const settings = training({
        max_steps: 8,
        per_device_train_batch_size: 4,
        gradient_accumulation_steps: 2,
        logging_steps: 3, // a log window spans the checkpoint at step 4
        save_steps: 2,
        eval_steps: 4,
        num_train_epochs: 1,
      });
      const run = (extra: Partial<Parameters<typeof trainDpo>[0]>) =>
        trainDpo({
          ...gpt2,
          training: settings,
          seed: 3,
          train: train.slice(0, 40), // 10 micro-batches an epoch: the run crosses an epoch boundary
          eval: held.slice(0, 8),
          padTokenId: PAD,
          configDigest: 'digest',
          ...extra,
        });
      const whole = await run({});

      const controller = new AbortController();
      await assert.rejects(
        run({
          saveCheckpoint: async (checkpoint) => {
            await saveTrainerCheckpoint(store, 'interrupted', checkpoint);
          },
          onStep: ({ step }) => {
            if (step === 5) controller.abort();
          },
          signal: controller.signal,
        }),
        (error) => error instanceof TrainingCancelledError && error.step === 5,
      );
      assert.deepEqual(await listTrainerCheckpoints(store, 'interrupted'), [2, 4, 5]);
      const checkpoint = await loadLatestTrainerCheckpoint(store, 'interrupted');
      assert.equal(checkpoint?.state.global_step, 5);
      const resumed = await run({ resumeFrom: checkpoint });

      assert.deepEqual(resumed.state.log_history, whole.state.log_history);
      for (const [name, tensor] of whole.trained) {
        const again = resumed.trained.get(name)!;
        assert.deepEqual(
          Buffer.from(again.data.buffer, again.data.byteOffset, again.data.byteLength),
          Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength),
          `${name} differs after resume`,
        );
      }
      await assert.rejects(
        run({ resumeFrom: checkpoint, configDigest: 'other' }),
        (error) => error instanceof TrainingSetupError && /config digest/.test(error.message),
      );
    });
  }
});

test('LoRA on Llama: only adapters train, and the merged export scores as the training graph did', async () => {
  const llama = tinyModel('llama');
  const pairs = await withReference(llama, markerPairs(32, 11));
  const logged: LogEntry[] = [];
  const result = await trainDpo({
    ...llama,
    training: training({
      max_steps: 4,
      eval_steps: 4,
      learning_rate: 1e-2,
      lora: { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] },
    }),
    seed: 5,
    train: pairs,
    eval: pairs.slice(0, 8),
    padTokenId: PAD,
    onLog: (entry) => {
      if ('eval_loss' in entry) logged.push(entry);
    },
  });
  const names = [...result.trained.keys()];
  assert.equal(names.length, 2 * 2 * 2); // 2 layers × (q_proj, v_proj) × (A, B)
  assert.ok(
    names.every((name) => /self_attn\.(q|v)_proj\.lora_[AB]\.weight$/.test(name)),
    names.join(),
  );
  for (const [name, tensor] of llama.parameters) {
    const merged = result.policy.get(name)!;
    const changed = merged.data.some((value, i) => value !== tensor.data[i]);
    assert.equal(
      changed,
      /(q|v)_proj\.weight$/.test(name),
      `${name} ${changed ? 'changed' : 'did not change'}`,
    );
  }
  const scorer = await PairScorer.create(llama.spec, result.policy);
  try {
    const scores = await scorer.score(pairs.slice(0, 8));
    const mean = scores.reduce((sum, score) => sum + score.logp_chosen, 0) / scores.length;
    const expected = logged.at(-1)!['eval_logps/chosen'];
    assert.ok(Math.abs(mean - expected) < 1e-4 * Math.abs(expected), `merged ${mean} vs trained ${expected}`);
  } finally {
    await scorer.release();
  }
});

test('a non-finite loss stops with its step number and no checkpoint of it', async () => {
  const poisoned = train
    .slice(0, 16)
    .map((pair, i) =>
      i === 10 ? { ...pair, ref_chosen_logps: 1.7e308, ref_rejected_logps: -1.7e308 } : pair,
    );
  const saved: number[] = [];
  await assert.rejects(
    trainDpo({
      ...gpt2,
      training: training({ max_steps: 2, save_steps: 1, shuffle: false, length_bucketing: false }),
      seed: 0,
      train: poisoned,
      padTokenId: PAD,
      saveCheckpoint: async (checkpoint: TrainerCheckpoint) => {
        saved.push(checkpoint.state.global_step);
      },
    }),
    (error) => error instanceof TrainingDivergedError && error.step === 2 && /not finite/.test(error.message),
  );
  assert.deepEqual(saved, [1]);
});

test('unusable input is refused before training', async () => {
  const base = { ...gpt2, seed: 0, padTokenId: PAD };
  await assert.rejects(
    trainDpo({ ...base, training: training({ max_steps: 1 }), train: [] }),
    (error) => error instanceof TrainingSetupError && /no pairs/.test(error.message),
  );
  const { ref_chosen_logps: _, ...unscored } = train[0];
  await assert.rejects(
    trainDpo({ ...base, training: training({ max_steps: 1 }), train: [unscored] }),
    (error) => error instanceof TrainingSetupError && /pair 0 has no reference log-probs/.test(error.message),
  );
  await assert.rejects(
    trainDpo({ ...base, training: { ...training({ max_steps: 1 }), beta: 0 }, train }),
    /beta must be > 0/,
  );
  await assert.rejects(
    trainDpo({
      ...base,
      training: training({ max_steps: 1, lora: { r: 2, lora_alpha: 4, target_modules: ['q_proj'] } }),
      train,
    }),
    /"q_proj" matches no linear layer of GPT2LMHeadModel \(it has c_attn, c_proj, c_fc\)/,
  );
});
