// Opens a fresh store per test on each backend: a temp folder for `file`, a unique prefix in a bucket made
// once per test process on the MinIO that test/run.ts started for `s3` (skipped loudly when it is absent).

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  type ArtifactStore,
  type OpenStoreOptions,
  openStore,
  type S3StoreOptions,
} from '../../store/index.ts';
import { type TestS3, testS3 } from '../support/services.ts';

export const backendNames = ['file', 's3'] as const;
export type BackendName = (typeof backendNames)[number];

export interface TestStore {
  store: ArtifactStore;
  rootUri: string;
  options: OpenStoreOptions;
  /** Overwrites an object behind the store's back (no metadata), as bit rot or a foreign writer would. */
  overwriteRaw(key: string, bytes: Uint8Array): Promise<void>;
}

export function rawS3Client(s3: TestS3): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
}

export function s3Options(s3: TestS3, extra: S3StoreOptions = {}): OpenStoreOptions {
  const credentials = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
  return { s3: { endpoint: s3.endpoint, credentials, ...extra } };
}

let bucket: Promise<string> | undefined;

/** One bucket per test process, unique so reruns against a long-lived MinIO never collide. */
function testBucket(s3: TestS3): Promise<string> {
  bucket ??= (async () => {
    const name = `dpoflow-store-${process.pid}-${randomBytes(4).toString('hex')}`;
    await rawS3Client(s3).send(new CreateBucketCommand({ Bucket: name }));
    return name;
  })();
  return bucket;
}

export async function openTestStore(
  t: TestContext,
  backend: BackendName,
  s3Extra: S3StoreOptions = {},
): Promise<TestStore | undefined> {
  if (backend === 'file') {
    const folder = await mkdtemp(join(tmpdir(), 'dpoflow-store-'));
    t.after(() => rm(folder, { recursive: true, force: true }));
    const rootUri = pathToFileURL(folder).href;
    const store = openStore(rootUri);
    return {
      store,
      rootUri,
      options: {},
      overwriteRaw: (key, bytes) => writeFile(fileURLToPath(store.uri(key)), bytes),
    };
  }
  const s3 = testS3(t);
  if (!s3) return undefined;
  const name = await testBucket(s3);
  const rootUri = `s3://${name}/${randomBytes(6).toString('hex')}`;
  const options = s3Options(s3, s3Extra);
  const store = openStore(rootUri, options);
  const raw = rawS3Client(s3);
  return {
    store,
    rootUri,
    options,
    overwriteRaw: async (key, bytes) => {
      const [, , bucketName, ...path] = store.uri(key).split('/');
      await raw.send(new PutObjectCommand({ Bucket: bucketName, Key: path.join('/'), Body: bytes }));
    },
  };
}
