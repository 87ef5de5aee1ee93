// Entry point of the artifact store: `openStore(rootUri, options)` picks the backend from the URI scheme
// (s3:// or file://); everything callers need is re-exported here.

import { BackendStore } from './artifact-store.ts';
import { FileBackend } from './file-store.ts';
import { S3Backend, type S3StoreOptions } from './s3-store.ts';
import type { ArtifactStore } from './types.ts';
import { parseRootUri } from './uri.ts';

export interface OpenStoreOptions {
  s3?: S3StoreOptions; // only read for s3:// roots
}

/** Opens a store on `s3://bucket/prefix` or `file:///abs/path`; no I/O happens until the first call. */
export function openStore(rootUri: string, options: OpenStoreOptions = {}): ArtifactStore {
  const root = parseRootUri(rootUri);
  const backend = root.scheme === 's3' ? new S3Backend(root, options.s3) : new FileBackend(root);
  return new BackendStore(backend);
}

export { isStoreError, StoreError, type StoreErrorCode } from './errors.ts';
export type { S3StoreOptions } from './s3-store.ts';
export { artifactRefSchema, manifestSchema } from './schemas.ts';
export type * from './types.ts';
