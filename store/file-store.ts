// Local-filesystem backend (`file:///abs/path`): one file per key under the root folder. Writes go to a temp
// file in the destination folder, are fsynced, then renamed, so a reader never opens a half-written file.

import { open, readdir, rmdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { compareKeys, type StagedObject, type StoreBackend } from './backend.ts';
import { fromNodeError, StoreError } from './errors.ts';
import { stageFile, writeFileAtomic } from './streams.ts';
import type { ListEntry, ObjectInfo } from './types.ts';
import { isTempKey, keyUri, type StoreRoot } from './uri.ts';

type FileRoot = Extract<StoreRoot, { scheme: 'file' }>;

export class FileBackend implements StoreBackend {
  constructor(readonly root: FileRoot) {}

  async write(key: string, body: Uint8Array | Readable): Promise<void> {
    await writeFileAtomic(this.pathOf(key), body).catch((error) => {
      if (!(body instanceof Uint8Array)) body.destroy();
      throw this.fail(error, key);
    });
  }

  async stage(folderKey: string, body: Uint8Array | Readable): Promise<StagedObject> {
    const staged = await stageFile(this.pathOf(folderKey), body).catch((error) => {
      throw this.fail(error, folderKey);
    });
    return {
      publish: (key) =>
        staged.publish(this.pathOf(key)).catch((error) => Promise.reject(this.fail(error, key))),
      discard: () => staged.discard(),
    };
  }

  async read(key: string): Promise<Readable> {
    const handle = await open(this.pathOf(key), 'r').catch((error) => {
      throw this.fail(error, key);
    });
    // open() succeeds on a folder; only a regular file is an object.
    if (!(await handle.stat()).isFile()) {
      await handle.close();
      throw new StoreError('NotFound', `${keyUri(this.root, key)}: no such object (a folder is there)`);
    }
    return handle.createReadStream();
  }

  async downloadUrl(key: string): Promise<string> {
    return pathToFileURL(this.pathOf(key)).href;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const info = await stat(this.pathOf(key));
      return info.isFile() ? { bytes: info.size, lastModified: info.mtime } : undefined;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw this.fail(error, key);
    }
  }

  /** Walks the deepest folder the prefix names, then filters by the whole prefix, as S3 would. */
  async *list(prefix: string, options: { includeTemp: boolean }): AsyncIterable<ListEntry> {
    const folderKey = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const entries: ListEntry[] = [];
    const walk = async (folder: string): Promise<void> => {
      const children = await readdir(this.pathOf(folder), { withFileTypes: true }).catch((error) => {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw this.fail(error, folder);
      });
      for (const child of children) {
        const key = folder ? `${folder}/${child.name}` : child.name;
        if (child.isDirectory()) await walk(key);
        else if (child.isFile() && key.startsWith(prefix) && (options.includeTemp || !isTempKey(key))) {
          const info = await this.stat(key);
          if (info) entries.push({ key, bytes: info.bytes, lastModified: info.lastModified });
        }
      }
    };
    await walk(folderKey);
    yield* entries.sort((a, b) => compareKeys(a.key, b.key));
  }

  async remove(keys: string[]): Promise<void> {
    const folders = new Set<string>();
    for (const key of keys) {
      await unlink(this.pathOf(key)).catch((error) => {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw this.fail(error, key);
      });
      folders.add(parentKey(key));
    }
    for (const folder of folders) await this.pruneEmptyFolders(folder);
  }

  async abortIncompleteUploads(): Promise<{ abortedUploads: number }> {
    return { abortedUploads: 0 }; // a killed writer leaves only temp files, which the caller sweeps
  }

  /** S3 has no folders: once a folder's last object is gone, remove it and its emptied parents. */
  private async pruneEmptyFolders(folderKey: string): Promise<void> {
    for (let folder = folderKey; folder; folder = parentKey(folder)) {
      // rmdir fails on a non-empty folder (a concurrent writer's temp file keeps it), which ends the walk.
      if (
        !(await rmdir(this.pathOf(folder)).then(
          () => true,
          () => false,
        ))
      )
        return;
    }
  }

  private pathOf(key: string): string {
    return key ? join(this.root.path, ...key.split('/')) : this.root.path;
  }

  private fail(error: unknown, key: string): StoreError {
    return fromNodeError(error, key ? keyUri(this.root, key) : this.root.uri);
  }
}

function parentKey(key: string): string {
  return key.includes('/') ? key.slice(0, key.lastIndexOf('/')) : '';
}
