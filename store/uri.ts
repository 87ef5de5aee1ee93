// Store URIs (`s3://bucket/prefix`, `file:///abs/path`) and the keys relative to them. Both backends accept
// exactly the same keys, so a pipeline that runs on a laptop runs unchanged against S3.

import { isAbsolute, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StoreError } from './errors.ts';

export type StoreRoot =
  | { scheme: 's3'; uri: string; bucket: string; prefix: string } // prefix: '' or 'a/b', no slash at either end
  | { scheme: 'file'; uri: string; path: string }; // path: absolute, no trailing separator

/** A segment with this start is reserved for in-flight writes; listings skip it and keys may not use it. */
export const tempMarker = '.dpoflow-tmp-';

const maxKeyBytes = 1024; // S3's limit for a whole key, root prefix included
const bucketName = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

function invalid(uri: string, message: string): StoreError {
  return new StoreError('InvalidKey', `${uri}: ${message}`);
}

export function parseRootUri(uri: string): StoreRoot {
  if (uri.startsWith('s3://')) {
    const [bucket, ...rest] = uri.slice('s3://'.length).split('/');
    if (!bucketName.test(bucket))
      throw invalid(uri, `bucket name "${bucket}" is not a valid S3 bucket name (3-63 of a-z 0-9 . -)`);
    const prefix = rest.filter((segment, index) => segment !== '' || index < rest.length - 1).join('/');
    if (prefix) checkSegments(uri, prefix, 'root prefix');
    return { scheme: 's3', bucket, prefix, uri: prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}` };
  }
  if (uri.startsWith('file://')) {
    let path: string;
    try {
      path = fileURLToPath(uri);
    } catch (error) {
      throw invalid(
        uri,
        `not an absolute local file URI (${(error as Error).message}); use file:///abs/path`,
      );
    }
    if (path.includes('\0')) throw invalid(uri, 'NUL byte in path');
    const trimmed = path.length > 1 && path.endsWith(sep) ? path.slice(0, -1) : path;
    return { scheme: 'file', path: trimmed, uri: pathToFileURL(trimmed).href };
  }
  throw invalid(uri, 'store URI must look like s3://bucket/prefix or file:///absolute/path');
}

/** The absolute URI of a key under the root. */
export function keyUri(root: StoreRoot, key: string): string {
  if (root.scheme === 's3') return `${root.uri}/${key}`;
  return pathToFileURL(`${root.path}${sep}${key.split('/').join(sep)}`).href;
}

/** A key, or an absolute URI under the root, as a checked key relative to the root. */
export function resolveKey(root: StoreRoot, keyOrUri: string): string {
  if (keyOrUri.startsWith('s3://') || keyOrUri.startsWith('file://')) {
    const key = keyUnderRoot(root, keyOrUri);
    if (key === undefined)
      throw invalid(keyOrUri, `URI is not under this store's root ${root.uri}; open a store on its own root`);
    return checkKey(root, key);
  }
  return checkKey(root, keyOrUri);
}

function keyUnderRoot(root: StoreRoot, uri: string): string | undefined {
  if (root.scheme === 's3')
    return uri.startsWith(`${root.uri}/`) ? uri.slice(root.uri.length + 1) : undefined;
  if (!uri.startsWith('file://')) return undefined;
  let path: string;
  try {
    path = fileURLToPath(uri);
  } catch {
    return undefined;
  }
  const inside = relative(root.path, path);
  if (!inside || inside.startsWith('..') || isAbsolute(inside)) return undefined;
  return inside.split(sep).join('/');
}

/** Checks an object key: relative, `/`-separated, no empty, `.` or `..` segments, no NUL, not reserved. */
export function checkKey(root: StoreRoot, key: string): string {
  if (typeof key !== 'string' || key === '') throw invalid(root.uri, `empty key ${JSON.stringify(key)}`);
  if (key.endsWith('/'))
    throw invalid(keyUri(root, key), 'key ends with "/" (that names a folder, not an object)');
  checkSegments(root.uri, key, 'key');
  const prefixBytes = root.scheme === 's3' && root.prefix ? Buffer.byteLength(root.prefix) + 1 : 0;
  if (prefixBytes + Buffer.byteLength(key) > maxKeyBytes)
    throw invalid(root.uri, `key of ${Buffer.byteLength(key)} bytes is over S3's ${maxKeyBytes}-byte limit`);
  return key;
}

/** Checks a listing prefix: '' (everything) or a key start; a trailing `/` restricts it to a folder. */
export function checkPrefix(root: StoreRoot, prefix: string): string {
  if (prefix === '') return prefix;
  checkSegments(root.uri, prefix.endsWith('/') ? prefix.slice(0, -1) : prefix, 'prefix');
  return prefix;
}

/** Joins folder-like parts into a key: `joinKey('runs/a/', 'sha256', hex)` → `runs/a/sha256/<hex>`. */
export function joinKey(...parts: string[]): string {
  return parts
    .map((part) => part.replace(/^\/+|\/+$/g, ''))
    .filter(Boolean)
    .join('/');
}

function checkSegments(uri: string, path: string, what: string): void {
  const shown = JSON.stringify(path);
  if (path.includes('\0')) throw invalid(uri, `${what} ${shown} contains a NUL byte`);
  if (path.startsWith('/'))
    throw invalid(uri, `${what} ${shown} is absolute; keys are relative to the store root`);
  for (const segment of path.split('/')) {
    if (segment === '..') throw invalid(uri, `${what} ${shown} has a ".." segment (path traversal)`);
    if (segment === '.' || segment === '')
      throw invalid(uri, `${what} ${shown} has an empty or "." segment; write it without "//" or "/./"`);
    if (segment.startsWith(tempMarker))
      throw invalid(uri, `${what} ${shown} uses the reserved segment prefix "${tempMarker}"`);
  }
}

/** Whether a listed key is an in-flight or abandoned temporary object rather than an artifact. */
export function isTempKey(key: string): boolean {
  return key.startsWith(tempMarker) || key.includes(`/${tempMarker}`);
}
