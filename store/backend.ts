// The primitives a storage backend provides; everything else (JSON, content addressing, manifests, verify,
// downloads to files) is built once on top of them in artifact-store.ts. Keys here are already checked.

import type { Readable } from 'node:stream';
import type { ListEntry, ObjectInfo, SweepResult } from './types.ts';
import type { StoreRoot } from './uri.ts';

export interface WriteOptions {
  contentType?: string;
  sha256?: string; // recorded with the object where the backend can (S3 metadata), for verify()
  bytes?: number; // size when known up front (local files): lets S3 pick parts within its 10,000-part limit
}

export interface PublishOptions extends WriteOptions {
  bytes: number; // size of the staged object, known once it was hashed
}

/** Bytes written to a temporary object, to be published under a key that is known only afterwards. */
export interface StagedObject {
  /** Makes the staged bytes appear whole under key, atomically, then drops the temporary object. */
  publish(key: string, options: PublishOptions): Promise<void>;
  discard(): Promise<void>;
}

export interface StoreBackend {
  readonly root: StoreRoot;
  /** Atomic: readers see the whole object under key or nothing (or the previous object). */
  write(key: string, body: Uint8Array | Readable, options: WriteOptions): Promise<void>;
  /** Writes body to a temporary object in folderKey ('' for the root); publish or discard it after. */
  stage(folderKey: string, body: Readable, options: WriteOptions): Promise<StagedObject>;
  /** NotFound rejects here, before any byte is read. */
  read(key: string): Promise<Readable>;
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** In UTF-8 byte order of keys; includeTemp also yields in-flight or abandoned temporary objects. */
  list(prefix: string, options: { includeTemp: boolean }): AsyncIterable<ListEntry>;
  /** Missing keys are not an error. */
  remove(keys: string[]): Promise<void>;
  /** A URL that reads the object without credentials until it expires (S3: presigned GET; files: file://). */
  downloadUrl(key: string, expiresInSeconds: number): Promise<string>;
  /** Aborts incomplete uploads started before cutoff (temporary objects are swept by the caller). */
  abortIncompleteUploads(cutoff: Date): Promise<Pick<SweepResult, 'abortedUploads'>>;
}

/** S3's listing order: keys compared as UTF-8 bytes (JS string order differs above U+FFFF). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
