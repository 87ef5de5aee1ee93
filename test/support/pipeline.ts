// What the pipeline tests share: a tiny GPT-2 and synthetic preference rows uploaded to the test store, and
// configs pointing at them ('+' prompts prefer vowel answers, '-' prompts consonants, as in test/trainer).

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { createPipelineActivities } from '../../activities/pipeline.ts';
import type { WorkerSettings } from '../../activities/stage.ts';
import { parseConfig } from '../../config/load.ts';
import type { DpoflowConfig, DpoflowConfigInput } from '../../config/schema.ts';
import { writeTinyModel } from '../../engine/models/tiny.ts';
import { mulberry32 } from '../../engine/random.ts';
import type { ArtifactStore } from '../../store/types.ts';
import { openTestStore, s3Options } from '../store/backends.ts';
import { testS3 } from './services.ts';
import { testTemporal } from './temporal.ts';

export function preferenceRows(count: number, seed = 5): string {
  const uniform = mulberry32(seed);
  const pick = (letters: string, length: number) =>
    Array.from({ length }, () => letters[Math.floor(uniform() * letters.length)]).join('');
  return Array.from({ length: count }, () => {
    const positive = uniform() < 0.5;
    const length = 2 + Math.floor(uniform() * 4);
    const [vowels, consonants] = [pick('aeiou', length), pick('bcdfghklmnpqrstvwxz', length)];
    const row = {
      prompt: `${positive ? '+' : '-'}${pick('abcdefghij', 2)}`,
      chosen: positive ? vowels : consonants,
      rejected: positive ? consonants : vowels,
    };
    return `${JSON.stringify(row)}\n`;
  }).join('');
}

/** Uploads inputs/model/ (a tiny GPT-2 with its tokenizer) and inputs/pairs.jsonl (120 rows). */
export async function uploadPipelineInputs(store: ArtifactStore): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'dpoflow-inputs-'));
  try {
    await writeTinyModel(join(scratch, 'model'), { family: 'gpt2', seed: 1 });
    for (const name of await readdir(join(scratch, 'model'))) {
      await store.putFile(`inputs/model/${name}`, join(scratch, 'model', name));
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  await store.put('inputs/pairs.jsonl', preferenceRows(120));
}

/** A config over the uploaded inputs; `storeUri` defaults to the inputs' store. */
export function pipelineConfig(
  store: ArtifactStore,
  options: {
    endpoint: string;
    queues: { cpu: string; gpu: string };
    training?: DpoflowConfigInput['training'];
    evaluation?: DpoflowConfigInput['evaluation'];
    train?: string;
    storeUri?: string;
    heartbeatTimeoutSeconds?: number;
    referenceShardsPerActivity?: number;
  },
): DpoflowConfig {
  return parseConfig({
    name: 'pipeline-test',
    model: { uri: store.uri('inputs/model') },
    dataset: { train: store.uri(options.train ?? 'inputs/pairs.jsonl'), eval_fraction: 0.2 },
    training: {
      learning_rate: 1e-3,
      logging_steps: 4,
      max_length: 32,
      max_prompt_length: 8,
      ...options.training,
    },
    evaluation: options.evaluation ?? { enabled: false },
    store: { uri: options.storeUri ?? store.rootUri, s3: { endpoint: options.endpoint } },
    temporal: {
      task_queues: options.queues,
      training_heartbeat_timeout_s: options.heartbeatTimeoutSeconds ?? 120,
      reference_shards_per_activity: options.referenceShardsPerActivity ?? 8,
    },
  });
}

/** Steps of the published trainer checkpoints anywhere under train/ (one training key per store in these tests). */
export async function checkpointSteps(store: ArtifactStore): Promise<number[]> {
  const steps: number[] = [];
  for await (const { key } of store.list('train/')) {
    const match = /\/checkpoints\/checkpoint-(\d+)\/manifest\.json$/.exec(key);
    if (match) steps.push(Number(match[1]));
  }
  return steps.sort((a, b) => a - b);
}

/**
 * Temporal, MinIO with the inputs uploaded, and in-process workers on fresh CPU and (unless `gpuWorker` is
 * false) GPU queues; undefined after marking the test skipped when a service is missing.
 */
export async function pipelineStack(
  t: TestContext,
  purpose: string,
  options: { gpuWorker?: boolean; settings?: WorkerSettings } = {},
) {
  const temporal = await testTemporal(t);
  const opened = await openTestStore(t, 's3');
  const s3 = testS3(t);
  if (!temporal || !opened || !s3) return undefined;
  await uploadPipelineInputs(opened.store);
  const queues = { cpu: temporal.taskQueue(`${purpose}-cpu`), gpu: temporal.taskQueue(`${purpose}-gpu`) };
  const activities = createPipelineActivities({ s3: s3Options(s3).s3, ...options.settings });
  await temporal.worker(queues.cpu, activities);
  if (options.gpuWorker !== false) await temporal.worker(queues.gpu, activities);
  return { temporal, opened, store: opened.store, s3, queues };
}
