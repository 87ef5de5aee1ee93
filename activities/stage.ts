// What every pipeline stage receives (the artifact store, S3 settings for the run's other locations, the
// onnxruntime options, and progress / cancellation hooks) and the digests that name their content-addressed
// outputs. A stage is a plain async function, so `dpoflow train` runs the same stages without Temporal.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { canonicalJson } from '../config/load.ts';
import type { DpoflowConfig } from '../config/schema.ts';
import type { RuntimeOptions } from '../engine/runtime.ts';
import { s3Settings } from '../store/from-config.ts';
import { openStore } from '../store/index.ts';
import type { S3StoreOptions } from '../store/s3-store.ts';
import type { ArtifactStore } from '../store/types.ts';

export interface StageContext {
  store: ArtifactStore;
  /** S3 client settings for models and datasets outside the store. */
  s3: S3StoreOptions;
  runtime: Partial<RuntimeOptions>;
  /** Progress for Temporal heartbeats or a progress bar; must not throw. */
  heartbeat?: (details: Record<string, unknown>) => void;
  /** Each metrics.jsonl entry as training logs it (TRL names). */
  log?: (entry: Record<string, number>) => void;
  signal?: AbortSignal;
}

/** Settings a worker adds to every run's: S3 credentials from its environment, an onnxruntime override. */
export interface WorkerSettings {
  s3?: S3StoreOptions;
  runtime?: Partial<RuntimeOptions>;
  /** HMAC key for completion webhooks; default DPOFLOW_WEBHOOK_SECRET. */
  webhookSecret?: string;
}

/** The context of one run: its store and S3 settings (the worker's win), its runtime section. */
export function stageContext(
  config: DpoflowConfig,
  worker: WorkerSettings,
  hooks: Pick<StageContext, 'heartbeat' | 'log' | 'signal'> = {},
): StageContext {
  const s3 = { ...s3Settings(config.store), ...stripUndefined(worker.s3 ?? {}) };
  return {
    store: openStore(config.store.uri, { s3 }),
    s3,
    runtime: {
      executionProvider: config.runtime.execution_provider,
      deviceId: config.runtime.device_id,
      intraOpThreads: config.runtime.intra_op_threads,
      graphOptimizationLevel: config.runtime.graph_optimization_level,
      ...worker.runtime,
    },
    ...hooks,
  };
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** sha256 of the canonical JSON of `value`: equal content, equal key, whatever the key order. */
export function digest(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

export async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The result an earlier run published under `prefix` (its manifest's meta, marked reused), or undefined. A hit
 * counts only when the manifest has the expected format and every file it lists exists with its size, so a
 * damaged artifact is rebuilt instead of trusted.
 */
export async function publishedResult<T>(
  store: ArtifactStore,
  prefix: string,
  format: string,
): Promise<(T & { reused: true }) | undefined> {
  const manifest = await store.readManifest(prefix);
  if (manifest?.format !== format) return undefined;
  for (const file of manifest.files) {
    const info = await store.head(`${prefix}/${file.path}`);
    if (info?.bytes !== file.bytes) return undefined;
  }
  return { ...(manifest.meta as T), reused: true };
}
