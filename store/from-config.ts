// Stores from a config: the artifact store its `store` section names, and read access to the other locations
// (models, datasets) it points at, with the same S3 client settings (credentials from the config only when
// both keys are given; otherwise the AWS chain, e.g. AWS_ACCESS_KEY_ID in the environment).

import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StoreConfig } from '../config/schema.ts';
import { StoreError } from './errors.ts';
import { openStore } from './index.ts';
import type { S3StoreOptions } from './s3-store.ts';
import type { ArtifactStore } from './types.ts';

export function s3Settings(config: StoreConfig): S3StoreOptions {
  const { s3 } = config;
  return {
    endpoint: s3.endpoint,
    region: s3.region,
    // An endpoint (MinIO) already implies path-style addressing; the flag forces it for any endpoint.
    forcePathStyle: s3.force_path_style || undefined,
    credentials:
      s3.access_key_id && s3.secret_access_key
        ? { accessKeyId: s3.access_key_id, secretAccessKey: s3.secret_access_key }
        : undefined,
  };
}

export function openConfiguredStore(config: StoreConfig): ArtifactStore {
  return openStore(config.uri, { s3: s3Settings(config) });
}

/**
 * A local path for the file at `uri`: file:// is read in place, s3:// is downloaded into `dir` (never
 * half-written: getToFile renames into place).
 */
export async function localFile(uri: string, dir: string, s3: S3StoreOptions): Promise<string> {
  if (!uri.startsWith('s3://')) return localPath(uri);
  const cut = uri.lastIndexOf('/');
  const name = uri.slice(cut + 1);
  const target = join(dir, name);
  await openStore(uri.slice(0, cut), { s3 }).getToFile(name, target);
  return target;
}

/** A local folder with the objects under `uri` (an HF model directory, say), downloaded into `dir` for s3://. */
export async function localFolder(uri: string, dir: string, s3: S3StoreOptions): Promise<string> {
  if (!uri.startsWith('s3://')) return localPath(uri);
  const folder = openStore(uri, { s3 });
  let count = 0;
  for await (const { key } of folder.list()) {
    await folder.getToFile(key, join(dir, ...key.split('/')));
    count++;
  }
  if (count === 0) throw new StoreError('NotFound', `${uri}: no objects under this folder`);
  return dir;
}

async function localPath(uri: string): Promise<string> {
  const path = uri.startsWith('file://') ? fileURLToPath(uri) : uri;
  await stat(path).catch((error) => {
    if (error.code === 'ENOENT') throw new StoreError('NotFound', `${uri}: no such file or folder`);
    throw error;
  });
  return path;
}
