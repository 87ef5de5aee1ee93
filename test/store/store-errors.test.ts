// Failures an activity must classify: a missing bucket, bad credentials, an unreachable or silent endpoint,
// malformed store URIs and keys — each a StoreError with the right code, retryable flag and a naming message.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { isStoreError, openStore, type StoreErrorCode } from '../../store/index.ts';
import { testS3 } from '../support/services.ts';
import { s3Options } from './backends.ts';

function expectStoreError(code: StoreErrorCode, retryable: boolean, message: RegExp) {
  return (error: unknown) => {
    assert.ok(isStoreError(error), `expected a StoreError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.equal(error.retryable, retryable, `${code} retryable`);
    assert.match(error.message, message);
    return true;
  };
}

describe('store errors on S3', () => {
  it('names a missing bucket on every operation, without retrying', async (t) => {
    const s3 = testS3(t);
    if (!s3) return;
    const bucket = `dpoflow-missing-${randomBytes(4).toString('hex')}`;
    const store = openStore(`s3://${bucket}/runs`, s3Options(s3));
    const missingBucket = expectStoreError(
      'NoSuchBucket',
      false,
      new RegExp(
        `^s3://${bucket}/runs/k: bucket "${bucket}" does not exist .*\\(create it or fix store\\.uri\\)$`,
      ),
    );
    await assert.rejects(store.head('k'), missingBucket);
    await assert.rejects(store.exists('k'), missingBucket);
    await assert.rejects(store.get('k'), missingBucket);
    await assert.rejects(store.put('k', 'v'), missingBucket);
    await assert.rejects(
      store.put(
        'k',
        (async function* () {
          yield Buffer.from('streamed');
        })(),
      ),
      missingBucket,
    );
    await assert.rejects(
      async () => {
        for await (const _ of store.list('')) assert.fail('a missing bucket lists nothing');
      },
      expectStoreError('NoSuchBucket', false, new RegExp(`bucket "${bucket}" does not exist`)),
    );
  });

  it('reports rejected credentials with the access key, for a bad key id and a bad secret', async (t) => {
    const s3 = testS3(t);
    if (!s3) return;
    const badKey = openStore('s3://any-bucket/x', s3Options({ ...s3, accessKeyId: 'xyz' }));
    const rejectedKey = expectStoreError(
      'AccessDenied',
      false,
      new RegExp(`^bad credentials for ${s3.endpoint}: access key "xyz" rejected \\(InvalidAccessKeyId\\)$`),
    );
    await assert.rejects(badKey.get('k'), rejectedKey);
    await assert.rejects(badKey.put('k', 'v'), rejectedKey);
    // HEAD responses have no body, so only the status says why: still AccessDenied with the key named.
    await assert.rejects(badKey.head('k'), expectStoreError('AccessDenied', false, /access key "xyz"/));

    const badSecret = openStore('s3://any-bucket/x', s3Options({ ...s3, secretAccessKey: 'wrong-secret' }));
    await assert.rejects(
      badSecret.get('k'),
      expectStoreError(
        'AccessDenied',
        false,
        new RegExp(`secret key of access key "${s3.accessKeyId}" rejected`),
      ),
    );
  });

  it('fails fast and retryable on a refused connection', async () => {
    const store = openStore('s3://some-bucket/x', {
      s3: {
        endpoint: 'http://127.0.0.1:1',
        credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
        maxAttempts: 1,
      },
    });
    const started = performance.now();
    await assert.rejects(
      store.get('k'),
      expectStoreError(
        'Unreachable',
        true,
        /^cannot reach S3 endpoint http:\/\/127\.0\.0\.1:1: ECONNREFUSED/,
      ),
    );
    await assert.rejects(store.exists('k'), expectStoreError('Unreachable', true, /ECONNREFUSED/));
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 2000, `took ${elapsedMs.toFixed(0)} ms`);
  });

  it('times out on an endpoint that accepts connections but never answers', async (t) => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      for (const socket of sockets) socket.destroy();
      silent.close();
    });
    const { port } = silent.address() as { port: number };
    const endpoint = `http://127.0.0.1:${port}`;
    const store = openStore('s3://some-bucket/x', {
      s3: {
        endpoint,
        credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
        maxAttempts: 1,
        requestTimeoutMs: 300,
      },
    });
    const started = performance.now();
    await assert.rejects(
      store.get('k'),
      expectStoreError('Unreachable', true, new RegExp(`^cannot reach S3 endpoint ${endpoint}: `)),
    );
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 3000, `took ${elapsedMs.toFixed(0)} ms`);
  });
});

describe('store errors on local files', () => {
  it('rejects ../ path traversal and writes nothing outside the root', async (t) => {
    const parent = await mkdtemp(join(tmpdir(), 'dpoflow-store-traversal-'));
    t.after(() => rm(parent, { recursive: true, force: true }));
    const store = openStore(pathToFileURL(join(parent, 'root')).href);
    for (const key of ['../escape.bin', 'a/../../escape.bin', '..']) {
      await assert.rejects(
        store.put(key, 'x'),
        expectStoreError('InvalidKey', false, /has a "\.\." segment \(path traversal\)/),
      );
    }
    await assert.rejects(store.put('/etc/passwd', 'x'), expectStoreError('InvalidKey', false, /is absolute/));
    await assert.rejects(store.put('a\0b', 'x'), expectStoreError('InvalidKey', false, /NUL byte/));
    await assert.rejects(
      store.get(pathToFileURL(join(parent, 'escape.bin')).href),
      expectStoreError('InvalidKey', false, /not under this store's root/),
    );
    assert.deepEqual(await readdir(parent), [], 'nothing written, not even the root folder');
  });

  it('reports a missing object under a root that does not exist yet as NotFound', async () => {
    const store = openStore(
      pathToFileURL(join(tmpdir(), `dpoflow-never-${randomBytes(4).toString('hex')}`)).href,
    );
    await assert.rejects(store.get('x'), expectStoreError('NotFound', false, /\/x: no such object/));
    assert.equal(await store.exists('x'), false);
    assert.deepEqual(await store.readManifest('artifact'), undefined);
  });

  it('rejects store URIs that are neither s3:// nor absolute file://', () => {
    for (const [uri, message] of [
      ['http://example.com/x', /must look like s3:\/\/bucket\/prefix or file:\/\/\/absolute\/path/],
      ['/tmp/plain-path', /must look like/],
      ['s3://Bad_Bucket/x', /bucket name "Bad_Bucket" is not a valid S3 bucket name/],
      ['s3://bucket/a/../b', /"\.\." segment/],
      ['file://host/share', /not an absolute local file URI/],
    ] as const) {
      assert.throws(() => openStore(uri), expectStoreError('InvalidKey', false, message), uri);
    }
  });
});
