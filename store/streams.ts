// Byte-stream helpers shared by both backends: normalizing put bodies, hashing while streaming, and writing a
// local file atomically (temp file in the same folder, fsync, rename, fsync the folder).

import { createHash, randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { StoreError } from './errors.ts';
import type { PutBody } from './types.ts';
import { tempMarker } from './uri.ts';

export interface Digest {
  sha256: string; // lowercase hex
  bytes: number;
}

/** Small bodies stay bytes (one request, sha computable up front); streams stay streams. */
export function normalizeBody(body: PutBody): Uint8Array | Readable {
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (body instanceof Uint8Array || body instanceof Readable) return body;
  return Readable.from(body, { objectMode: false });
}

export function digestOf(bytes: Uint8Array): Digest {
  return { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.byteLength };
}

/**
 * Passes source through unchanged while hashing it; `digest()` is valid once the stream has ended. With
 * `expect`, a mismatch errors the stream before its end is signalled, so an upload of a file that changed
 * since it was hashed fails instead of completing under the wrong content address.
 */
export function hashing(
  source: AsyncIterable<Uint8Array | string>,
  expect?: { digest: Digest; what: string },
): { stream: Readable; digest: () => Digest } {
  const hash = createHash('sha256');
  let result: Digest | undefined;
  async function* pass(): AsyncGenerator<Uint8Array> {
    let bytes = 0;
    for await (const chunk of source) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      hash.update(buffer);
      bytes += buffer.byteLength;
      yield buffer;
    }
    const digest = { sha256: hash.digest('hex'), bytes };
    if (expect && (digest.sha256 !== expect.digest.sha256 || digest.bytes !== expect.digest.bytes))
      throw new StoreError(
        'Integrity',
        `${expect.what} changed while uploading: hashed ${expect.digest.bytes} bytes sha256 ${expect.digest.sha256}, ` +
          `then read ${digest.bytes} bytes sha256 ${digest.sha256}`,
        { retryable: true },
      );
    result = digest;
  }
  return {
    stream: Readable.from(pass(), { objectMode: false }),
    digest: () => {
      if (!result) throw new Error('hashing(): digest() called before the stream ended');
      return result;
    },
  };
}

export async function hashAll(source: AsyncIterable<Uint8Array | string>): Promise<Digest> {
  const { stream, digest } = hashing(source);
  for await (const _ of stream);
  return digest();
}

export async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** A fully written and fsynced temp file, not yet visible under its final name. */
export interface StagedFile {
  tempPath: string;
  /** Renames into place (same folder or same filesystem) and fsyncs the destination folder. */
  publish(finalPath: string): Promise<void>;
  discard(): Promise<void>;
}

export async function stageFile(
  folder: string,
  source: Uint8Array | AsyncIterable<Uint8Array>,
): Promise<StagedFile> {
  const tempPath = join(folder, `${tempMarker}${randomBytes(8).toString('hex')}`);
  const handle = await openCreating(tempPath);
  const discard = () => unlink(tempPath).catch(() => undefined);
  try {
    await writeFile(handle, source);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await discard();
    throw error;
  }
  await handle.close();
  return {
    tempPath,
    discard,
    async publish(finalPath) {
      await mkdir(dirname(finalPath), { recursive: true });
      await rename(tempPath, finalPath);
      await syncFolder(dirname(finalPath));
    },
  };
}

/** Creates the file and its folders; retries once when a concurrent delete pruned the new folder. */
async function openCreating(path: string): Promise<FileHandle> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(dirname(path), { recursive: true });
    try {
      return await open(path, 'wx');
    } catch (error) {
      if (attempt > 1 || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}

export async function writeFileAtomic(
  path: string,
  source: Uint8Array | AsyncIterable<Uint8Array>,
): Promise<void> {
  const staged = await stageFile(dirname(path), source);
  try {
    await staged.publish(path);
  } catch (error) {
    await staged.discard();
    throw error;
  }
}

/** Makes a rename durable; some platforms (Windows) cannot open folders, where this is a no-op. */
async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r').catch(() => undefined);
  if (!handle) return;
  await handle.sync().catch(() => undefined);
  await handle.close();
}
