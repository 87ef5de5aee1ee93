// The artifact store both backends share: keys and URIs, JSON, content-addressed puts, verify, manifests and
// atomic downloads, all built on a backend's few primitives (backend.ts) so the two behave the same.

import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { z } from 'zod';
import type { StoreBackend } from './backend.ts';
import { fromNodeError, isStoreError, StoreError } from './errors.ts';
import { manifestSchema } from './schemas.ts';
import {
  collect,
  type Digest,
  digestOf,
  hashAll,
  hashing,
  normalizeBody,
  writeFileAtomic,
} from './streams.ts';
import type {
  ArtifactManifest,
  ArtifactRef,
  ArtifactStore,
  ContentAddressedOptions,
  ContentAddressedPut,
  KeyOrUri,
  ListEntry,
  ObjectInfo,
  PutBody,
  PutOptions,
  SweepOptions,
  SweepResult,
  VerifyOptions,
  VerifyResult,
} from './types.ts';
import { checkPrefix, isTempKey, joinKey, keyUri, resolveKey } from './uri.ts';

const manifestName = 'manifest.json';
const manifestChecks = 8; // HEADs in flight while checking a manifest's files

export class BackendStore implements ArtifactStore {
  constructor(private readonly backend: StoreBackend) {}

  get rootUri(): string {
    return this.backend.root.uri;
  }

  uri(key: string): string {
    return keyUri(this.backend.root, this.keyOf(key));
  }

  keyOf(keyOrUri: KeyOrUri): string {
    return resolveKey(this.backend.root, keyOrUri);
  }

  async put(key: KeyOrUri, body: PutBody, options: PutOptions = {}): Promise<void> {
    await this.backend.write(this.keyOf(key), normalizeBody(body), options);
  }

  async putFile(key: KeyOrUri, localPath: string, options: PutOptions = {}): Promise<void> {
    const checked = this.keyOf(key);
    const { stream, bytes } = await readLocal(localPath);
    await this.backend.write(checked, stream, { ...options, bytes });
  }

  async get(key: KeyOrUri): Promise<Uint8Array> {
    const checked = this.keyOf(key);
    const stream = await this.backend.read(checked);
    return collect(stream).catch((error) => Promise.reject(fromNodeError(error, this.uri(checked))));
  }

  async getStream(key: KeyOrUri): Promise<Readable> {
    return this.backend.read(this.keyOf(key));
  }

  async getToFile(key: KeyOrUri, localPath: string): Promise<void> {
    const checked = this.keyOf(key);
    const stream = await this.backend.read(checked);
    await writeFileAtomic(localPath, stream).catch((error) => {
      stream.destroy();
      throw fromNodeError(error, `${this.uri(checked)} → ${localPath}`);
    });
  }

  head(key: KeyOrUri): Promise<ObjectInfo | undefined> {
    return this.backend.stat(this.keyOf(key));
  }

  downloadUrl(key: KeyOrUri, expiresInSeconds = 3600): Promise<string> {
    return this.backend.downloadUrl(this.keyOf(key), expiresInSeconds);
  }

  async exists(key: KeyOrUri): Promise<boolean> {
    return (await this.head(key)) !== undefined;
  }

  list(prefix = ''): AsyncIterable<ListEntry> {
    return this.backend.list(checkPrefix(this.backend.root, prefix), { includeTemp: false });
  }

  async delete(key: KeyOrUri): Promise<void> {
    await this.backend.remove([this.keyOf(key)]);
  }

  /** Manifests go first, so a reader stops seeing an artifact before any of its data disappears. */
  async deletePrefix(prefix: string): Promise<number> {
    const keys: string[] = [];
    for await (const entry of this.list(prefix)) keys.push(entry.key);
    const isManifest = (key: string) => key === manifestName || key.endsWith(`/${manifestName}`);
    const manifests = keys.filter(isManifest);
    if (manifests.length) await this.backend.remove(manifests);
    const data = keys.filter((key) => !isManifest(key));
    if (data.length) await this.backend.remove(data);
    return keys.length;
  }

  async putJson(key: KeyOrUri, value: unknown): Promise<void> {
    const text = JSON.stringify(value, null, 2);
    if (text === undefined)
      throw new StoreError('Integrity', `${this.uri(key)}: value ${String(value)} is not JSON`);
    await this.put(key, `${text}\n`, { contentType: 'application/json' });
  }

  getJson(key: KeyOrUri): Promise<unknown>;
  getJson<T>(key: KeyOrUri, schema: z.ZodType<T>): Promise<T>;
  async getJson<T>(key: KeyOrUri, schema?: z.ZodType<T>): Promise<unknown> {
    const uri = this.uri(key);
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(await this.get(key)).toString('utf8'));
    } catch (error) {
      if (isStoreError(error)) throw error;
      throw new StoreError('Integrity', `${uri}: not valid JSON (${(error as Error).message})`, {
        cause: error,
      });
    }
    if (!schema) return value;
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data;
    const issues = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
    throw new StoreError('Integrity', `${uri}: JSON does not match its schema: ${issues.join('; ')}`, {
      cause: parsed.error,
    });
  }

  /**
   * Bytes are hashed first, so an existing object is never uploaded again. A stream's hash is known only at
   * its end, so it is uploaded to a temp object beside the final key while hashing, then published with a
   * server-side copy on S3 (a rename on disk) — or dropped when that content already exists. This needs no
   * local disk and reads the stream once; the price is one server-side copy of new content on S3.
   */
  async putContentAddressed(
    prefix: string,
    body: PutBody,
    options: ContentAddressedOptions,
  ): Promise<ContentAddressedPut> {
    const folder = joinKey(this.folderOf(prefix), 'sha256');
    const normalized = normalizeBody(body);
    if (normalized instanceof Uint8Array)
      return this.putAddressed(folder, digestOf(normalized), async () => normalized, options);
    const { stream, digest } = hashing(normalized);
    const staged = await this.backend.stage(folder, stream, { contentType: options.contentType });
    try {
      const { sha256, bytes } = digest();
      const key = joinKey(folder, sha256);
      const ref = { uri: this.uri(key), sha256, bytes, format: options.format };
      if ((await this.backend.stat(key))?.bytes === bytes) {
        await staged.discard();
        return { ref, reused: true };
      }
      await staged.publish(key, { contentType: options.contentType, sha256, bytes });
      return { ref, reused: false };
    } catch (error) {
      await staged.discard().catch(() => undefined);
      throw error;
    }
  }

  async putFileContentAddressed(
    prefix: string,
    localPath: string,
    options: ContentAddressedOptions,
  ): Promise<ContentAddressedPut> {
    const folder = joinKey(this.folderOf(prefix), 'sha256');
    const digest = await hashAll((await readLocal(localPath)).stream);
    // Re-hashed while uploading: a file changed since the first pass fails before it is published.
    const upload = async () =>
      hashing((await readLocal(localPath)).stream, { digest, what: localPath }).stream;
    return this.putAddressed(folder, digest, upload, options);
  }

  private async putAddressed(
    folder: string,
    digest: Digest,
    body: () => Promise<Uint8Array | Readable>,
    options: ContentAddressedOptions,
  ): Promise<ContentAddressedPut> {
    const key = joinKey(folder, digest.sha256);
    const ref = { uri: this.uri(key), sha256: digest.sha256, bytes: digest.bytes, format: options.format };
    if ((await this.backend.stat(key))?.bytes === digest.bytes) return { ref, reused: true };
    await this.backend.write(key, await body(), { contentType: options.contentType, ...digest });
    return { ref, reused: false };
  }

  /** Size always; sha256 from the stored metadata when there is one (S3), else (or with rehash) by re-reading. */
  async verify(ref: ArtifactRef, options: VerifyOptions = {}): Promise<VerifyResult> {
    const key = this.keyOf(ref.uri);
    const info = await this.backend.stat(key);
    if (!info) return { ok: false, problem: 'missing', message: `${ref.uri}: no object stored` };
    if (info.bytes !== ref.bytes)
      return {
        ok: false,
        problem: 'size',
        message: `${ref.uri}: ${info.bytes} bytes stored, ref says ${ref.bytes}`,
      };
    const checked = !options.rehash && info.sha256 ? 'metadata' : 'rehash';
    const sha256 =
      checked === 'metadata' ? info.sha256 : (await hashAll(await this.backend.read(key))).sha256;
    if (sha256 === ref.sha256) return { ok: true, checked };
    return {
      ok: false,
      problem: 'sha256',
      message: `${ref.uri}: sha256 ${sha256} (${checked === 'metadata' ? 'stored metadata' : 'content'}), ref says ${ref.sha256}`,
    };
  }

  async publishManifest(prefix: string, manifest: ArtifactManifest): Promise<ArtifactRef> {
    const folder = this.folderOf(prefix);
    const manifestKey = joinKey(folder, manifestName);
    const parsed = manifestSchema.safeParse(manifest);
    if (!parsed.success)
      throw new StoreError(
        'Integrity',
        `${this.uri(manifestKey)}: malformed manifest: ${parsed.error.message}`,
      );
    const files = [...parsed.data.files];
    const checkNext = async (): Promise<void> => {
      for (let file = files.shift(); file; file = files.shift()) await this.checkManifestFile(folder, file);
    };
    await Promise.all(Array.from({ length: manifestChecks }, checkNext));
    const bytes = Buffer.from(`${JSON.stringify(parsed.data, null, 2)}\n`, 'utf8');
    const { sha256 } = digestOf(bytes);
    await this.backend.write(manifestKey, bytes, { contentType: 'application/json', sha256 });
    return { uri: this.uri(manifestKey), sha256, bytes: bytes.byteLength, format: manifest.format };
  }

  private async checkManifestFile(folder: string, file: ArtifactManifest['files'][number]): Promise<void> {
    const key = this.keyOf(joinKey(folder, file.path));
    const info = await this.backend.stat(key);
    if (!info)
      throw new StoreError(
        'NotFound',
        `${this.uri(key)}: listed in the manifest but not stored; write every file before publishing the manifest`,
      );
    if (info.bytes !== file.bytes)
      throw new StoreError(
        'Integrity',
        `${this.uri(key)}: ${info.bytes} bytes stored, manifest says ${file.bytes}`,
      );
    if (file.sha256 && info.sha256 && file.sha256 !== info.sha256)
      throw new StoreError(
        'Integrity',
        `${this.uri(key)}: stored sha256 ${info.sha256}, manifest says ${file.sha256}`,
      );
  }

  async readManifest(prefix: string): Promise<ArtifactManifest | undefined> {
    try {
      return await this.getJson(joinKey(this.folderOf(prefix), manifestName), manifestSchema);
    } catch (error) {
      if (isStoreError(error, 'NotFound')) return undefined;
      throw error;
    }
  }

  async sweepIncomplete(options: SweepOptions): Promise<SweepResult> {
    const cutoff = new Date(Date.now() - options.olderThanMs);
    const stale: string[] = [];
    for await (const entry of this.backend.list('', { includeTemp: true }))
      if (isTempKey(entry.key) && entry.lastModified < cutoff) stale.push(entry.key);
    if (stale.length) await this.backend.remove(stale);
    const { abortedUploads } = await this.backend.abortIncompleteUploads(cutoff);
    return { deletedTempObjects: stale.length, abortedUploads };
  }

  /** A folder-like prefix ('' for the root, trailing '/' allowed, or an absolute URI) as a key. */
  private folderOf(prefix: string): string {
    const trimmed = prefix.replace(/\/+$/, '');
    return trimmed ? this.keyOf(trimmed) : '';
  }
}

/** Opens a local file for streaming; a missing or unreadable file fails here with its path. */
async function readLocal(localPath: string): Promise<{ stream: Readable; bytes: number }> {
  const handle = await open(localPath, 'r').catch((error) => {
    throw fromNodeError(error, `local file ${localPath}`);
  });
  const { size } = await handle.stat();
  return { stream: handle.createReadStream(), bytes: size };
}
