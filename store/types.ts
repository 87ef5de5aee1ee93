// Public shapes of the artifact store: the interface both backends (S3, local files) present, the typed
// reference workflows pass between steps, and the manifest that publishes a multi-object artifact.

import type { Readable } from 'node:stream';
import type { z } from 'zod';

/** What `put` accepts. Streams and async iterables are consumed once and never buffered whole. */
export type PutBody = Uint8Array | string | Readable | AsyncIterable<Uint8Array>;

/** A key relative to the store root (`data/shard-0001.bin`) or an absolute URI under the root. */
export type KeyOrUri = string;

/** A stored artifact as workflows pass it between steps: small, serializable, enough to find and check it. */
export interface ArtifactRef {
  uri: string; // absolute: s3://bucket/prefix/sha256/<hex> or file:///abs/path/sha256/<hex>
  sha256: string; // lowercase hex of the content
  bytes: number;
  format: string; // what a reader should expect, e.g. 'dpoflow.shard.v1'; readers check its magic and version
}

export interface PutOptions {
  contentType?: string;
}

export interface ContentAddressedOptions extends PutOptions {
  format: string;
}

export interface ContentAddressedPut {
  ref: ArtifactRef;
  /** True when an object with this content already existed, so nothing new was published. */
  reused: boolean;
}

export interface ObjectInfo {
  bytes: number;
  lastModified: Date;
  etag?: string; // S3 only; quoted as S3 sends it
  sha256?: string; // set for objects written by putContentAddressed on S3 (object metadata)
}

export interface ListEntry {
  key: string; // relative to the store root
  bytes: number;
  lastModified: Date;
}

export type VerifyResult =
  | { ok: true; checked: 'metadata' | 'rehash' } // which evidence matched: stored sha256 or a full re-read
  | { ok: false; problem: 'missing' | 'size' | 'sha256'; message: string };

export interface VerifyOptions {
  /** Re-read and hash the whole object even when a stored sha256 is available. */
  rehash?: boolean;
}

/** One object of a multi-object artifact, relative to the artifact's prefix. */
export interface ManifestFile {
  path: string; // e.g. 'shard-0001.bin'
  bytes: number;
  sha256?: string;
}

/** Written last under `<prefix>/manifest.json`; an artifact without it does not exist for readers. */
export interface ArtifactManifest {
  format: string; // e.g. 'dpoflow.shards'
  formatVersion: number;
  files: ManifestFile[];
  meta?: Record<string, unknown>; // config, counts, anything small the producer wants to record
}

export interface SweepOptions {
  /** Only temporary objects and incomplete multipart uploads older than this are removed. */
  olderThanMs: number;
}

export interface SweepResult {
  deletedTempObjects: number;
  abortedUploads: number; // S3 multipart uploads never completed (e.g. the writer was killed)
}

export interface ArtifactStore {
  /** The root URI the store was opened on, normalized (no trailing slash). */
  readonly rootUri: string;
  /** Absolute URI of a key. */
  uri(key: string): string;
  /** Key relative to the root of a key or an absolute URI under the root; InvalidKey otherwise. */
  keyOf(keyOrUri: KeyOrUri): string;

  put(key: KeyOrUri, body: PutBody, options?: PutOptions): Promise<void>;
  putFile(key: KeyOrUri, localPath: string, options?: PutOptions): Promise<void>;
  get(key: KeyOrUri): Promise<Uint8Array>;
  /** Resolves once the object is known to exist (NotFound rejects here, not mid-stream). */
  getStream(key: KeyOrUri): Promise<Readable>;
  /** Downloads to a temp file beside localPath, fsyncs, then renames: localPath is never half-written. */
  getToFile(key: KeyOrUri, localPath: string): Promise<void>;
  head(key: KeyOrUri): Promise<ObjectInfo | undefined>;
  /** A URL that downloads the object without credentials for `expiresInSeconds` (S3: presigned; file: file://). */
  downloadUrl(key: KeyOrUri, expiresInSeconds?: number): Promise<string>;
  exists(key: KeyOrUri): Promise<boolean>;
  /** Objects whose key starts with prefix, in S3's order (UTF-8 bytes); temporary objects are skipped. */
  list(prefix?: string): AsyncIterable<ListEntry>;
  /** Deleting a missing key is not an error. */
  delete(key: KeyOrUri): Promise<void>;
  /** Deletes every object whose key starts with prefix; returns how many. */
  deletePrefix(prefix: string): Promise<number>;

  putJson(key: KeyOrUri, value: unknown): Promise<void>;
  getJson(key: KeyOrUri): Promise<unknown>;
  getJson<T>(key: KeyOrUri, schema: z.ZodType<T>): Promise<T>;

  /** Stores body at `<prefix>/sha256/<hex>` unless that object already exists. */
  putContentAddressed(
    prefix: string,
    body: PutBody,
    options: ContentAddressedOptions,
  ): Promise<ContentAddressedPut>;
  /** Same, hashing the local file first so an existing object is never uploaded again. */
  putFileContentAddressed(
    prefix: string,
    localPath: string,
    options: ContentAddressedOptions,
  ): Promise<ContentAddressedPut>;
  verify(ref: ArtifactRef, options?: VerifyOptions): Promise<VerifyResult>;

  /** Checks every listed file exists with its size, then writes `<prefix>/manifest.json` last. */
  publishManifest(prefix: string, manifest: ArtifactManifest): Promise<ArtifactRef>;
  /** The published manifest, or undefined when the artifact is absent or still being written. */
  readManifest(prefix: string): Promise<ArtifactManifest | undefined>;

  /** Removes what killed writers left behind: temp objects/files and incomplete multipart uploads. */
  sweepIncomplete(options: SweepOptions): Promise<SweepResult>;
}
