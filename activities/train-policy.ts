// Stage 3, DPO training (the GPU task queue's work): trainDpo over the prepared pairs and their cached
// reference log-probs, checkpoints under train/<key>/checkpoints/, and the results beside them —
// metrics.jsonl, trainer_state.json and model/ (an HF directory, manifest last). The key digests the policy
// weights, the data, the reference cache and the training settings; a finished key is reused, and a retried
// attempt resumes from its newest checkpoint.

import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DpoflowConfig } from '../config/schema.ts';
import { type Checkpoint, loadCheckpoint, saveCheckpoint } from '../engine/models/checkpoint.ts';
import { localFolder } from '../store/from-config.ts';
import type { ArtifactStore } from '../store/types.ts';
import {
  listTrainerCheckpoints,
  loadLatestTrainerCheckpoint,
  saveTrainerCheckpoint,
} from '../trainer/checkpoints.ts';
import { trainDpo } from '../trainer/dpo-trainer.ts';
import { type TrainingResult, type TrainingSetup, TrainingSetupError } from '../trainer/loop.ts';
import type { LogEntry } from '../trainer/state.ts';
import { type PreparedData, TOKENIZER_FILES } from './prepare-data.ts';
import { modelDigest, type ReferenceLogprobs, readScoredPairs } from './reference-logprobs.ts';
import { digest, publishedResult, type StageContext } from './stage.ts';

const MODEL_FORMAT = 'dpoflow.hf-model';

export interface TrainedPolicy {
  key: string;
  prefix: string;
  /** The trained HF model directory. */
  modelUri: string;
  metricsUri: string;
  steps: number;
  /** The last evaluation's metrics (eval_*), when there were held-out pairs. */
  evaluation?: Record<string, number>;
  reused: boolean;
}

export async function trainPolicy(
  config: DpoflowConfig,
  inputs: { data: PreparedData; reference?: ReferenceLogprobs },
  context: StageContext,
  /** What to do with checkpoints of an unfinished earlier attempt: continue (a retry) or refuse (ask first). */
  options: { checkpoints: 'resume' | 'refuse' } = { checkpoints: 'resume' },
): Promise<TrainedPolicy> {
  return withModelFolder(config.model.uri, 'dpoflow-train-', context, async (modelDir) => {
    const key = digest({
      format: 'dpoflow.trained-policy',
      version: 1,
      model: await modelDigest(modelDir),
      data: inputs.data.key,
      reference: inputs.reference?.key ?? null,
      training: config.training,
      seed: config.seed,
    });
    return trainAndExport(`train/${key}`, modelDir, context, options, async (policy, hooks) => {
      const [train, held] = await Promise.all(
        (['train', 'eval'] as const).map((side) =>
          readScoredPairs(context.store, inputs.data, inputs.reference, side),
        ),
      );
      return trainDpo({
        spec: policy.spec,
        parameters: policy.parameters,
        training: config.training,
        seed: config.seed,
        train,
        eval: held,
        padTokenId: padTokenId(policy),
        runtime: context.runtime,
        configDigest: key,
        signal: context.signal,
        ...hooks,
      });
    });
  });
}

/**
 * Runs `body` with the model at `uri` in a local folder (downloaded for s3://) and a scratch folder for other
 * downloads; the scratch folder is removed afterwards.
 */
export async function withModelFolder<T>(
  uri: string,
  scratchPrefix: string,
  context: StageContext,
  body: (modelDir: string, scratch: string) => Promise<T>,
): Promise<T> {
  const scratch = await mkdtemp(join(tmpdir(), scratchPrefix));
  try {
    return await body(await localFolder(uri, join(scratch, 'model'), context.s3), scratch);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** What the shared training flow hands a stage's training call: resume point and the store-backed hooks. */
type TrainingHooks = Pick<TrainingSetup<unknown>, 'resumeFrom' | 'saveCheckpoint' | 'onLog' | 'onStep'>;

/**
 * The flow every training stage shares, under `prefix`: a finished model is reused; otherwise training resumes
 * from the newest checkpoint (or refuses to), logs to metrics.jsonl, heartbeats every step with the latest
 * checkpoint, and the result is exported to model/ (manifest last) beside trainer_state.json.
 */
export async function trainAndExport(
  prefix: string,
  modelDir: string,
  context: StageContext,
  options: { checkpoints: 'resume' | 'refuse' },
  train: (policy: Checkpoint, hooks: TrainingHooks) => Promise<TrainingResult>,
): Promise<TrainedPolicy> {
  const { store } = context;
  const done = await publishedResult<Omit<TrainedPolicy, 'reused'>>(store, `${prefix}/model`, MODEL_FORMAT);
  if (done) return done;

  const policy = await loadCheckpoint(modelDir);
  const checkpoints = `${prefix}/checkpoints`;
  if (options.checkpoints === 'refuse') {
    const steps = await listTrainerCheckpoints(store, checkpoints);
    if (steps.length > 0) {
      throw new TrainingSetupError(
        `an unfinished run of this config has checkpoints (last: step ${steps.at(-1)}) under ${store.uri(checkpoints)}; ` +
          'resume it (dpoflow train --resume) or change a setting',
      );
    }
  }
  const resumeFrom = await loadLatestTrainerCheckpoint(store, checkpoints);
  if (resumeFrom) context.heartbeat?.({ stage: 'train', resumedFrom: resumeFrom.state.global_step });
  const history: LogEntry[] = [...(resumeFrom?.state.log_history ?? [])];
  let lastCheckpoint = resumeFrom
    ? store.uri(`${checkpoints}/checkpoint-${resumeFrom.state.global_step}`)
    : undefined;
  const result = await train(policy, {
    resumeFrom,
    saveCheckpoint: async (checkpoint) => {
      lastCheckpoint = store.uri(await saveTrainerCheckpoint(store, checkpoints, checkpoint));
    },
    onLog: async (entry) => {
      history.push(entry);
      context.log?.(entry);
      await store.put(`${prefix}/metrics.jsonl`, history.map((line) => `${JSON.stringify(line)}\n`).join(''));
    },
    onStep: (progress) => context.heartbeat?.({ stage: 'train', ...progress, checkpoint: lastCheckpoint }),
  });
  await store.putJson(`${prefix}/trainer_state.json`, result.state);
  const evaluation = [...result.state.log_history].reverse().find((entry) => 'eval_loss' in entry);
  const trained: Omit<TrainedPolicy, 'reused'> = {
    key: prefix.split('/').at(-1)!,
    prefix,
    modelUri: store.uri(`${prefix}/model`),
    metricsUri: store.uri(`${prefix}/metrics.jsonl`),
    steps: result.state.global_step,
    ...(evaluation ? { evaluation } : {}),
  };
  await exportModel(store, `${prefix}/model`, { ...policy, parameters: result.policy }, modelDir, trained);
  return { ...trained, reused: false };
}

/** Writes the HF directory locally, uploads each file, then publishes the manifest (readers see all or none). */
export async function exportModel(
  store: ArtifactStore,
  prefix: string,
  model: Pick<Checkpoint, 'rawConfig' | 'parameters' | 'generationConfig'>,
  tokenizerDir: string,
  meta: Record<string, unknown> = {},
): Promise<void> {
  const staging = await mkdtemp(join(tmpdir(), 'dpoflow-export-'));
  const dir = join(staging, 'model');
  try {
    await saveCheckpoint(dir, model, {
      addFiles: async (target) => {
        for (const name of TOKENIZER_FILES) {
          await copyFile(join(tokenizerDir, name), join(target, name)).catch((error) => {
            if (error.code !== 'ENOENT') throw error;
          });
        }
      },
    });
    const files = [];
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (!entry.isFile()) continue;
      await store.putFile(`${prefix}/${entry.name}`, join(dir, entry.name));
      files.push({ path: entry.name, bytes: (await store.head(`${prefix}/${entry.name}`))!.bytes });
    }
    await store.publishManifest(prefix, { format: MODEL_FORMAT, formatVersion: 1, files, meta });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

export function padTokenId(model: Checkpoint): number {
  const pad = model.rawConfig.pad_token_id;
  return typeof pad === 'number' ? pad : (model.spec.eosTokenIds[0] ?? 0);
}
