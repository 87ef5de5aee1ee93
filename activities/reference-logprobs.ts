// Stage 2, the reference log-prob cache: π_ref runs once over every prepared pair and the sums of its response
// log-probs go to reference/<key>/ — one JSON file per data shard, manifest.json last. The key digests the
// reference weights and the prepared data, so any run with the same two finds the cache, and a retry after a
// crash skips the shards already written (heartbeats name the last one).

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DpoflowConfig } from '../config/schema.ts';
import { type Checkpoint, loadCheckpoint } from '../engine/models/checkpoint.ts';
import { localFolder } from '../store/from-config.ts';
import type { ArtifactStore } from '../store/types.ts';
import type { TrainingPair } from '../trainer/batches.ts';
import { scoreReference } from '../trainer/reference.ts';
import { type PreparedData, readShard } from './prepare-data.ts';
import { digest, fileDigest, publishedResult, type StageContext } from './stage.ts';

const FORMAT = 'dpoflow.reference-logprobs';

export interface ReferenceLogprobs {
  key: string;
  prefix: string;
  uri: string;
  /** Per data shard name: the file holding [ref_chosen_logps, ref_rejected_logps] per pair. */
  files: Record<string, string>;
  reused: boolean;
}

/** Digest of an HF model folder's config and weight files: what a model's outputs depend on. */
export async function modelDigest(dir: string): Promise<string> {
  const names = (await readdir(dir)).filter(
    (name) => name === 'config.json' || /\.safetensors(\.index\.json)?$/.test(name),
  );
  return digest(
    Object.fromEntries(
      await Promise.all(names.sort().map(async (name) => [name, await fileDigest(join(dir, name))])),
    ),
  );
}

/**
 * Scores every shard and publishes the cache; with `shards`, scores only those and publishes nothing (one
 * group of a fan-out across workers, after which a call without `shards` publishes what the groups wrote).
 */
export async function cacheReferenceLogprobs(
  config: DpoflowConfig,
  data: PreparedData,
  context: StageContext,
  options: { shards?: readonly string[] } = {},
): Promise<ReferenceLogprobs> {
  const { store } = context;
  const scratch = await mkdtemp(join(tmpdir(), 'dpoflow-reference-'));
  try {
    const modelDir = await localFolder(
      config.model.reference ?? config.model.uri,
      join(scratch, 'model'),
      context.s3,
    );
    const key = digest({ format: FORMAT, version: 1, model: await modelDigest(modelDir), data: data.key });
    const prefix = `reference/${key}`;
    const existing = await publishedResult<Omit<ReferenceLogprobs, 'reused'>>(store, prefix, FORMAT);
    if (existing) return existing;

    let reference: Checkpoint | undefined;
    const shards = options.shards ?? [...data.shards.train, ...data.shards.eval];
    const files: Record<string, string> = {};
    const manifestFiles: { path: string; bytes: number }[] = [];
    for (const [index, shard] of shards.entries()) {
      if (context.signal?.aborted) throw context.signal.reason ?? new Error('cancelled');
      const name = shard.replace(/\.jsonl$/, '.json');
      const key = `${prefix}/${name}`;
      // An earlier attempt may have finished this shard: each file is written whole, so existing means done.
      let info = await store.head(key);
      if (!info) {
        const pairs = await readShard(store, `${data.prefix}/${shard}`);
        reference ??= await loadCheckpoint(modelDir);
        const scored = await scoreReference(reference.spec, reference.parameters, pairs, {
          batchSize: config.training.per_device_eval_batch_size,
          runtime: context.runtime,
          onProgress: (done, total) => context.heartbeat?.({ stage: 'reference', shard, done, total }),
        });
        await store.put(
          key,
          JSON.stringify(scored.map((pair) => [pair.ref_chosen_logps, pair.ref_rejected_logps])),
        );
        info = (await store.head(key))!;
      }
      files[shard] = name;
      manifestFiles.push({ path: name, bytes: info.bytes });
      context.heartbeat?.({ stage: 'reference', finishedShard: shard, shards: index + 1, of: shards.length });
    }
    const cache: Omit<ReferenceLogprobs, 'reused'> = { key, prefix, uri: store.uri(prefix), files };
    if (options.shards) return { ...cache, reused: false };
    await store.publishManifest(prefix, {
      format: FORMAT,
      formatVersion: 1,
      files: manifestFiles,
      meta: cache,
    });
    return { ...cache, reused: false };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The prepared pairs of one side with their reference log-probs attached. */
export async function readScoredPairs(
  store: ArtifactStore,
  data: PreparedData,
  reference: ReferenceLogprobs | undefined,
  side: 'train' | 'eval',
): Promise<TrainingPair[]> {
  const pairs: TrainingPair[] = [];
  for (const shard of data.shards[side]) {
    const shardPairs = await readShard(store, `${data.prefix}/${shard}`);
    if (reference) {
      const logps = (await store.getJson(`${reference.prefix}/${reference.files[shard]}`)) as [
        number,
        number,
      ][];
      if (logps.length !== shardPairs.length) {
        throw new Error(
          `${reference.uri}: ${reference.files[shard]} has ${logps.length} entries for ${shardPairs.length} pairs`,
        );
      }
      shardPairs.forEach((pair, i) => {
        [pair.ref_chosen_logps, pair.ref_rejected_logps] = logps[i];
      });
    }
    pairs.push(...shardPairs);
  }
  return pairs;
}
