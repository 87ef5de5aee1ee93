// One DPO run in this process, from a config: data preparation, reference log-probs, training with
// checkpoints in the artifact store, and the trained model exported as a Hugging Face directory. What
// `dpoflow train` runs; the Temporal pipeline runs the same stages as separate activities.
//
// Under the store: runs/<name>/checkpoints/checkpoint-<step>/, runs/<name>/metrics.jsonl,
// runs/<name>/trainer_state.json, runs/<name>/model/ (config.json, model.safetensors, tokenizer files).

import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configDigest } from '../config/load.ts';
import type { DpoflowConfig } from '../config/schema.ts';
import { dpoUsesReference } from '../engine/dpo/step.ts';
import { type Checkpoint, loadCheckpoint, saveCheckpoint } from '../engine/models/checkpoint.ts';
import type { RuntimeOptions } from '../engine/runtime.ts';
import { openConfiguredStore } from '../store/from-config.ts';
import type { ArtifactStore } from '../store/types.ts';
import { loadTokenizer, type TextTokenizer } from '../text/tokenizer.ts';
import type { TrainingPair } from './batches.ts';
import { listTrainerCheckpoints, loadLatestTrainerCheckpoint, saveTrainerCheckpoint } from './checkpoints.ts';
import { type PreparedPairs, preparePairs, readPreferenceFile, splitPairs } from './dataset.ts';
import { type StepProgress, TrainingSetupError, trainDpo } from './dpo-trainer.ts';
import { scoreReference } from './reference.ts';
import type { LogEntry, TrainerState } from './state.ts';

export type RunEvent =
  | { kind: 'message'; text: string }
  | { kind: 'reference'; done: number; total: number }
  | { kind: 'step'; progress: StepProgress }
  | { kind: 'log'; entry: LogEntry };

export interface RunTrainingOptions {
  /** Continue from the newest checkpoint of this run (an error when there is none). */
  resume?: boolean;
  signal?: AbortSignal;
  report?: (event: RunEvent) => void;
}

export interface RunTrainingResult {
  /** runs/<name> in the store. */
  runUri: string;
  modelUri: string;
  state: TrainerState;
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

export async function runTraining(
  config: DpoflowConfig,
  options: RunTrainingOptions = {},
): Promise<RunTrainingResult> {
  const report = options.report ?? (() => {});
  const { training } = config;
  if (config.model.dtype !== 'float32') {
    throw new TrainingSetupError(`model.dtype: training runs in float32, received "${config.model.dtype}"`);
  }
  const modelDir = localFolder(config.model.uri, 'model.uri');
  const policy = await loadCheckpoint(modelDir);
  const tokenizerDir = localFolder(config.model.tokenizer ?? config.model.uri, 'model.tokenizer');
  let tokenizer: Promise<TextTokenizer> | undefined;
  const prepare = async (uri: string, field: string): Promise<PreparedPairs> => {
    const prepared = await preparePairs(
      await readPreferenceFile(localFolder(uri, field), config.dataset.file_type),
      {
        format: config.dataset.format,
        maxInvalidRows: config.dataset.max_invalid_rows,
        dedupe: config.dataset.dedupe,
        truncation: training,
        tokenizer: () => {
          tokenizer ??= loadTokenizer(tokenizerDir, { chatTemplate: config.model.chat_template });
          return tokenizer;
        },
      },
    );
    report({ kind: 'message', text: describePrepared(field, prepared, training.max_length) });
    return prepared;
  };
  const trainSet = await prepare(config.dataset.train, 'dataset.train');
  let trainPairs: TrainingPair[];
  let evalPairs: TrainingPair[];
  if (config.dataset.eval) {
    trainPairs = trainSet.pairs;
    evalPairs = (await prepare(config.dataset.eval, 'dataset.eval')).pairs;
  } else {
    ({ train: trainPairs, eval: evalPairs } = splitPairs(
      trainSet.pairs,
      config.dataset.eval_fraction,
      config.dataset.split_seed,
    ));
  }
  report({ kind: 'message', text: `${trainPairs.length} training pairs, ${evalPairs.length} held out` });

  const store = openConfiguredStore(config.store);
  const runPrefix = `runs/${config.name}`;
  const checkpointsPrefix = `${runPrefix}/checkpoints`;
  const existing = await listTrainerCheckpoints(store, checkpointsPrefix);
  if (options.resume && existing.length === 0) {
    throw new TrainingSetupError(
      `--resume: run "${config.name}" has no checkpoint under ${store.uri(checkpointsPrefix)}`,
    );
  }
  if (!options.resume && existing.length > 0) {
    throw new TrainingSetupError(
      `run "${config.name}" already has checkpoints (last: step ${existing.at(-1)}) under ${store.uri(checkpointsPrefix)}; ` +
        'pass --resume to continue it, or change name',
    );
  }
  const resumeFrom = options.resume ? await loadLatestTrainerCheckpoint(store, checkpointsPrefix) : undefined;
  if (resumeFrom) report({ kind: 'message', text: `resuming from step ${resumeFrom.state.global_step}` });

  const runtime: Partial<RuntimeOptions> = {
    executionProvider: config.runtime.execution_provider,
    deviceId: config.runtime.device_id,
    intraOpThreads: config.runtime.intra_op_threads,
    graphOptimizationLevel: config.runtime.graph_optimization_level,
  };
  if (dpoUsesReference(training.loss_type)) {
    const reference = config.model.reference
      ? await loadCheckpoint(localFolder(config.model.reference, 'model.reference'))
      : policy;
    const all = await scoreReference(reference.spec, reference.parameters, [...trainPairs, ...evalPairs], {
      batchSize: training.per_device_eval_batch_size,
      runtime,
      onProgress: (done, total) => report({ kind: 'reference', done, total }),
    });
    trainPairs = all.slice(0, trainPairs.length);
    evalPairs = all.slice(trainPairs.length);
  }

  const history: LogEntry[] = [...(resumeFrom?.state.log_history ?? [])];
  const result = await trainDpo({
    spec: policy.spec,
    parameters: policy.parameters,
    training,
    seed: config.seed,
    train: trainPairs,
    eval: evalPairs,
    padTokenId: padTokenId(policy),
    runtime,
    configDigest: configDigest(config),
    resumeFrom,
    signal: options.signal,
    saveCheckpoint: async (checkpoint) => {
      await saveTrainerCheckpoint(store, checkpointsPrefix, checkpoint);
    },
    onLog: async (entry) => {
      history.push(entry);
      report({ kind: 'log', entry });
      await store.put(
        `${runPrefix}/metrics.jsonl`,
        history.map((line) => `${JSON.stringify(line)}\n`).join(''),
      );
    },
    onStep: (progress) => report({ kind: 'step', progress }),
  });

  const modelPrefix = `${runPrefix}/model`;
  await exportModel(store, modelPrefix, { ...policy, parameters: result.policy }, tokenizerDir);
  await store.putJson(`${runPrefix}/trainer_state.json`, result.state);
  return { runUri: store.uri(runPrefix), modelUri: store.uri(modelPrefix), state: result.state };
}

/** Writes the HF directory locally, uploads each file, then publishes the manifest (readers see all or none). */
async function exportModel(
  store: ArtifactStore,
  prefix: string,
  model: Pick<Checkpoint, 'rawConfig' | 'parameters' | 'generationConfig'>,
  tokenizerDir: string,
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
    const files = await readdir(dir, { withFileTypes: true });
    const manifestFiles = [];
    for (const file of files.filter((entry) => entry.isFile())) {
      await store.putFile(`${prefix}/${file.name}`, join(dir, file.name));
      manifestFiles.push({ path: file.name, bytes: (await store.head(`${prefix}/${file.name}`))!.bytes });
    }
    await store.publishManifest(prefix, {
      format: 'dpoflow.hf-model',
      formatVersion: 1,
      files: manifestFiles,
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

function localFolder(uri: string, field: string): string {
  if (uri.startsWith('file://')) return fileURLToPath(uri);
  if (uri.startsWith('s3://')) {
    throw new TrainingSetupError(
      `${field}: dpoflow train reads local files; copy ${uri} to a folder first (the pipeline reads S3 directly)`,
    );
  }
  return uri;
}

function padTokenId(model: Checkpoint): number {
  const pad = model.rawConfig.pad_token_id;
  return typeof pad === 'number' ? pad : (model.spec.eosTokenIds[0] ?? 0);
}

function describePrepared(field: string, prepared: PreparedPairs, maxLength: number): string {
  const { tally } = prepared;
  const parts = [`${field}: ${prepared.rows} rows → ${prepared.pairs.length} pairs`];
  if (prepared.invalid.length) parts.push(`${prepared.invalid.length} invalid (e.g. ${prepared.invalid[0]})`);
  if (prepared.duplicates) parts.push(`${prepared.duplicates} duplicates dropped`);
  if (tally.dropped.too_long)
    parts.push(`${tally.dropped.too_long} longer than max_length ${maxLength} skipped`);
  if (tally.dropped.identical)
    parts.push(`${tally.dropped.identical} with identical chosen and rejected skipped`);
  if (tally.truncated) parts.push(`${tally.truncated} truncated`);
  return parts.join('; ');
}
