// Stage 1, data preparation: the dataset files and tokenizer (s3:// or local) become tokenized pairs in the
// store under data/<key>/ — JSONL shards of token ids for train and eval, stats.json, and manifest.json written
// last. The key digests everything the result depends on (file contents, tokenizer files, template, settings),
// so the same inputs are prepared once and a rerun finds them.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DpoflowConfig } from '../config/schema.ts';
import { localFile } from '../store/from-config.ts';
import { isStoreError } from '../store/index.ts';
import type { ArtifactStore } from '../store/types.ts';
import { loadTokenizer, type TextTokenizer } from '../text/tokenizer.ts';
import type { TrainingPair } from '../trainer/batches.ts';
import { type PreparedPairs, preparePairs, readPreferenceFile, splitPairs } from '../trainer/dataset.ts';
import { digest, fileDigest, publishedResult, type StageContext } from './stage.ts';

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];
const SHARD_PAIRS = 2048;
const FORMAT = 'dpoflow.prepared-data';

/** What later stages need to find the prepared data; small enough for any Temporal payload. */
export interface PreparedData {
  key: string;
  /** Store key of the artifact folder, e.g. data/<key>. */
  prefix: string;
  uri: string;
  shards: { train: string[]; eval: string[] };
  counts: { rows: number; train: number; eval: number; invalid: number; duplicates: number; skipped: number };
  /** True when an earlier run had prepared exactly this. */
  reused: boolean;
}

export async function prepareData(config: DpoflowConfig, context: StageContext): Promise<PreparedData> {
  const { store } = context;
  const scratch = await mkdtemp(join(tmpdir(), 'dpoflow-prepare-'));
  try {
    const trainFile = await localFile(config.dataset.train, join(scratch, 'train'), context.s3);
    const evalFile = config.dataset.eval
      ? await localFile(config.dataset.eval, join(scratch, 'eval'), context.s3)
      : undefined;
    const tokenizerDir = await tokenizerFolder(config, join(scratch, 'tokenizer'), context);
    const { dataset, training } = config;
    const key = digest({
      format: FORMAT,
      version: 1,
      train: await fileDigest(trainFile),
      eval: evalFile ? await fileDigest(evalFile) : null,
      tokenizer: await tokenizerDigests(tokenizerDir),
      chat_template: config.model.chat_template ?? null,
      dataset: { ...dataset, train: null, eval: null },
      truncation: {
        max_length: training.max_length,
        max_prompt_length: training.max_prompt_length,
        truncation_mode: training.truncation_mode,
      },
    });
    const prefix = `data/${key}`;
    const existing = await publishedResult<Omit<PreparedData, 'reused'>>(store, prefix, FORMAT);
    if (existing) return existing;

    let tokenizer: Promise<TextTokenizer> | undefined;
    // Messages name the file as the user gave it, not the worker's download.
    const prepare = async (file: string, uri: string) =>
      preparePairs(
        { ...(await readPreferenceFile(file, dataset.file_type)), source: uri },
        {
          format: dataset.format,
          maxInvalidRows: dataset.max_invalid_rows,
          dedupe: dataset.dedupe,
          truncation: training,
          tokenizer: () => {
            tokenizer ??= loadTokenizer(tokenizerDir, { chatTemplate: config.model.chat_template });
            return tokenizer;
          },
        },
      );
    const trainSet = await prepare(trainFile, dataset.train);
    const evalSet = evalFile && dataset.eval ? await prepare(evalFile, dataset.eval) : undefined;
    const split = evalSet
      ? { train: trainSet.pairs, eval: evalSet.pairs }
      : splitPairs(trainSet.pairs, dataset.eval_fraction, dataset.split_seed);
    context.heartbeat?.({ stage: 'prepare', pairs: split.train.length + split.eval.length });

    const files: { path: string; bytes: number }[] = [];
    const shards = { train: [] as string[], eval: [] as string[] };
    for (const side of ['train', 'eval'] as const) {
      for (let start = 0, index = 0; start < split[side].length; start += SHARD_PAIRS, index++) {
        const name = `${side}-${String(index).padStart(5, '0')}.jsonl`;
        const body = split[side]
          .slice(start, start + SHARD_PAIRS)
          .map((pair) => `${JSON.stringify(pair)}\n`)
          .join('');
        await store.put(`${prefix}/${name}`, body);
        files.push({ path: name, bytes: Buffer.byteLength(body) });
        shards[side].push(name);
      }
    }
    const sets = [trainSet, ...(evalSet ? [evalSet] : [])];
    const sum = (pick: (set: PreparedPairs) => number) => sets.reduce((total, set) => total + pick(set), 0);
    const counts = {
      rows: sum((set) => set.rows),
      train: split.train.length,
      eval: split.eval.length,
      invalid: sum((set) => set.invalid.length),
      duplicates: sum((set) => set.duplicates),
      skipped: sum((set) => set.tally.dropped.too_long + set.tally.dropped.identical),
    };
    const stats = {
      counts,
      invalid_rows: sets.flatMap((set) => set.invalid).slice(0, 100),
      tokenization: sets.map((set) => set.tally),
      dropped_examples: sets.flatMap((set) => set.dropped),
    };
    const statsBody = `${JSON.stringify(stats, null, 2)}\n`;
    await store.put(`${prefix}/stats.json`, statsBody);
    files.push({ path: 'stats.json', bytes: Buffer.byteLength(statsBody) });
    const prepared: Omit<PreparedData, 'reused'> = { key, prefix, uri: store.uri(prefix), shards, counts };
    await store.publishManifest(prefix, { format: FORMAT, formatVersion: 1, files, meta: prepared });
    return { ...prepared, reused: false };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Digest of each tokenizer file (null when absent): what tokenization depends on, for cache keys. */
export async function tokenizerDigests(dir: string): Promise<Record<string, string | null>> {
  return Object.fromEntries(
    await Promise.all(
      TOKENIZER_FILES.map(async (name) => [name, await fileDigest(join(dir, name)).catch(() => null)]),
    ),
  );
}

/** The tokenizer files of model.tokenizer (default model.uri) in a local folder; absent optional files are fine. */
export async function tokenizerFolder(
  config: DpoflowConfig,
  dir: string,
  context: StageContext,
): Promise<string> {
  const uri = config.model.tokenizer ?? config.model.uri;
  if (!uri.startsWith('s3://')) return localFile(uri, dir, context.s3);
  for (const name of TOKENIZER_FILES) {
    await localFile(`${uri.replace(/\/$/, '')}/${name}`, dir, context.s3).catch((error) => {
      if (!(isStoreError(error, 'NotFound') && name !== 'tokenizer.json')) throw error;
    });
  }
  return dir;
}

export async function readShard(store: ArtifactStore, key: string): Promise<TrainingPair[]> {
  const text = new TextDecoder().decode(await store.get(key));
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as TrainingPair);
}
