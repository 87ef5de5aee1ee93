// The artifact store's contract, run identically against the file backend and S3 (MinIO): round trips, head,
// listing and pagination, deletes, JSON, content addressing and verify, manifests, key checks.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import {
  type ArtifactStore,
  artifactRefSchema,
  isStoreError,
  type StoreErrorCode,
} from '../../store/index.ts';
import { backendNames, openTestStore } from './backends.ts';
import { deterministicBytes } from './deterministic-bytes.ts';

const mib = 1024 * 1024;

async function keysUnder(store: ArtifactStore, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  for await (const entry of store.list(prefix)) keys.push(entry.key);
  return keys;
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function rejectsWith(code: StoreErrorCode, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(isStoreError(error, code), `expected StoreError ${code}, got ${String(error)}`);
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

async function localTempFolder(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'dpoflow-store-local-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  return folder;
}

for (const backend of backendNames) {
  describe(`artifact store on ${backend}`, () => {
    it('round-trips bytes, strings, streams, async iterables and files', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const bytes = Uint8Array.from({ length: 3000 }, (_, index) => (index * 7) % 256);
      await store.put('rt/bytes.bin', bytes);
      assert.deepEqual(Buffer.from(await store.get('rt/bytes.bin')), Buffer.from(bytes));

      await store.put('rt/text.txt', 'héllo wörld\n', { contentType: 'text/plain' });
      assert.equal(Buffer.from(await store.get('rt/text.txt')).toString('utf8'), 'héllo wörld\n');

      await store.put('rt/readable.bin', Readable.from([Buffer.from('ab'), Buffer.from('cd')]));
      assert.equal(Buffer.from(await store.get('rt/readable.bin')).toString(), 'abcd');

      const streamed = await readAll(deterministicBytes(3 * mib + 5, 7));
      await store.put('rt/iterable.bin', deterministicBytes(3 * mib + 5, 7));
      assert.equal(sha256(await readAll(await store.getStream('rt/iterable.bin'))), sha256(streamed));

      await store.put('rt/empty.bin', new Uint8Array(0));
      assert.equal((await store.get('rt/empty.bin')).byteLength, 0);

      await store.put('rt/bytes.bin', 'overwritten');
      assert.equal(Buffer.from(await store.get('rt/bytes.bin')).toString(), 'overwritten');

      const local = await localTempFolder(t);
      await writeFile(join(local, 'in.bin'), streamed);
      await store.putFile('rt/file.bin', join(local, 'in.bin'));
      const target = join(local, 'nested', 'out.bin');
      await store.getToFile('rt/file.bin', target);
      assert.equal(sha256(await readFile(target)), sha256(streamed));
      assert.deepEqual(await readdir(dirname(target)), ['out.bin'], 'no temp file left beside the download');
    });

    it('gives download URLs that read the object without credentials', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      await store.put('shared/report.html', '<html>report</html>');
      const url = await store.downloadUrl('shared/report.html', 60);
      const body =
        backend === 's3' ? await (await fetch(url)).text() : await readFile(fileURLToPath(url), 'utf8');
      assert.equal(body, '<html>report</html>');
      if (backend === 's3') assert.match(url, /X-Amz-Expires=60/);
    });

    it('addresses keys by absolute URI under the root, and rejects URIs outside it', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store, rootUri } = opened;
      const key = 'uris/with space#and?odd.bin';
      const uri = store.uri(key);
      assert.ok(uri.startsWith(`${rootUri}/`), `${uri} under ${rootUri}`);
      await store.put(uri, 'by uri');
      assert.equal(Buffer.from(await store.get(key)).toString(), 'by uri');
      assert.equal(store.keyOf(uri), key);
      const outside = backend === 's3' ? 's3://other-bucket/x' : 'file:///elsewhere/x';
      await assert.rejects(store.get(outside), rejectsWith('InvalidKey', /not under this store's root/));
    });

    it('answers head and exists, and getToFile of a missing key leaves no file', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const before = Date.now();
      await store.put('h/one.bin', new Uint8Array(1234));
      const head = await store.head('h/one.bin');
      assert.equal(head?.bytes, 1234);
      // S3 reports Last-Modified in whole seconds.
      assert.ok(
        Math.abs(head!.lastModified.getTime() - before) < 5000,
        `lastModified ${head!.lastModified.toISOString()}`,
      );
      assert.equal(await store.exists('h/one.bin'), true);
      assert.equal(await store.head('h/missing.bin'), undefined);
      assert.equal(await store.exists('h/missing.bin'), false);
      assert.equal(await store.exists('h'), false, 'a "folder" is not an object');
      await assert.rejects(store.get('h/missing.bin'), rejectsWith('NotFound', /h\/missing\.bin/));
      await assert.rejects(store.getStream('h/missing.bin'), rejectsWith('NotFound'));
      const local = await localTempFolder(t);
      await assert.rejects(store.getToFile('h/missing.bin', join(local, 'x.bin')), rejectsWith('NotFound'));
      assert.deepEqual(await readdir(local), []);
    });

    it('lists by string prefix in UTF-8 byte order, as S3 does', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const keys = ['data/a/2', 'data/a-1', 'data/b', 'datum', 'other/x', 'data/é'];
      for (const key of keys) await store.put(key, key);
      assert.deepEqual(await keysUnder(store, 'data/'), ['data/a-1', 'data/a/2', 'data/b', 'data/é']);
      assert.deepEqual(await keysUnder(store, 'data/a'), ['data/a-1', 'data/a/2']);
      assert.deepEqual(await keysUnder(store, 'dat'), ['data/a-1', 'data/a/2', 'data/b', 'data/é', 'datum']);
      assert.deepEqual(
        await keysUnder(store),
        [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
      );
      assert.deepEqual(await keysUnder(store, 'nothing/'), []);
      for await (const entry of store.list('other/')) assert.equal(entry.bytes, 'other/x'.length);
    });

    it('lists more than 1000 keys (S3 paginates) and deletes them by prefix', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const count = 1100;
      const names = Array.from({ length: count }, (_, index) => `many/k-${String(index).padStart(5, '0')}`);
      const queue = [...names];
      const putNext = async () => {
        for (let key = queue.shift(); key; key = queue.shift()) await store.put(key, key.slice(-5));
      };
      await Promise.all(Array.from({ length: 16 }, putNext));
      await store.put('keep/me', 'kept');
      assert.deepEqual(await keysUnder(store, 'many/'), names);
      assert.equal(await store.deletePrefix('many/'), count);
      assert.deepEqual(await keysUnder(store, 'many/'), []);
      assert.deepEqual(await keysUnder(store), ['keep/me']);
    });

    it('deletes single keys idempotently and prefixes selectively', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      for (const key of ['d/a/1', 'd/a/2', 'd/ab', 'd/b/1']) await store.put(key, key);
      await store.delete('d/a/1');
      await store.delete('d/a/1');
      await store.delete('d/never-existed');
      assert.equal(await store.exists('d/a/1'), false);
      assert.equal(await store.deletePrefix('d/a/'), 1);
      assert.deepEqual(await keysUnder(store, 'd/'), ['d/ab', 'd/b/1']);
      await store.put('d/a/again', 'a folder emptied by deletes can be written again');
      assert.equal(await store.exists('d/a/again'), true);
    });

    it('writes and reads JSON, validating with a zod schema', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const config = { lr: 5e-7, beta: 0.1, steps: [1, 2, 3], name: 'dpo' };
      await store.putJson('json/config.json', config);
      assert.deepEqual(await store.getJson('json/config.json'), config);
      const schema = z.object({
        lr: z.number(),
        beta: z.number(),
        steps: z.array(z.number()),
        name: z.string(),
      });
      const typed = await store.getJson('json/config.json', schema);
      assert.equal(typed.beta, 0.1);

      const strict = z.object({ lr: z.number(), beta: z.string(), warmup: z.number() });
      await assert.rejects(
        store.getJson('json/config.json', strict),
        rejectsWith('Integrity', /json\/config\.json: JSON does not match its schema: .*beta.*warmup/),
      );
      await store.put('json/broken.json', '{"lr": ');
      await assert.rejects(store.getJson('json/broken.json'), rejectsWith('Integrity', /not valid JSON/));
      await assert.rejects(store.getJson('json/missing.json'), rejectsWith('NotFound'));
    });

    it('content-addresses bytes, streams and files, reusing existing objects', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const content = await readAll(deterministicBytes(2 * mib + 3, 11));
      const hex = sha256(content);

      const first = await store.putContentAddressed('cas', content, { format: 'test.blob.v1' });
      assert.deepEqual(first.ref, {
        uri: store.uri(`cas/sha256/${hex}`),
        sha256: hex,
        bytes: content.byteLength,
        format: 'test.blob.v1',
      });
      assert.equal(first.reused, false);
      assert.deepEqual(artifactRefSchema.parse(first.ref), first.ref, 'refs pass the schema workflows use');
      const lastModified = (await store.head(first.ref.uri))!.lastModified;

      const again = await store.putContentAddressed('cas/', content, { format: 'test.blob.v1' });
      assert.deepEqual(again, { ref: first.ref, reused: true });
      const streamed = await store.putContentAddressed('cas', deterministicBytes(2 * mib + 3, 11), {
        format: 'test.blob.v1',
      });
      assert.deepEqual(streamed, { ref: first.ref, reused: true });
      const local = await localTempFolder(t);
      await writeFile(join(local, 'blob.bin'), content);
      const fromFile = await store.putFileContentAddressed('cas', join(local, 'blob.bin'), {
        format: 'test.blob.v1',
      });
      assert.deepEqual(fromFile, { ref: first.ref, reused: true });
      assert.deepEqual(
        (await store.head(first.ref.uri))!.lastModified,
        lastModified,
        'reuse never rewrote it',
      );
      assert.deepEqual(await keysUnder(store, 'cas/'), [`cas/sha256/${hex}`], 'no temp objects left behind');

      const other = await store.putContentAddressed('cas', deterministicBytes(1000, 12), {
        format: 'test.blob.v1',
      });
      assert.equal(other.reused, false);
      assert.notEqual(other.ref.sha256, hex);
      assert.equal(sha256(await store.get(other.ref.uri)), other.ref.sha256);

      await writeFile(join(local, 'small.bin'), 'small file');
      const small = await store.putFileContentAddressed('cas', join(local, 'small.bin'), { format: 'text' });
      assert.equal(small.ref.sha256, sha256(Buffer.from('small file')));
      assert.equal(Buffer.from(await store.get(small.ref.uri)).toString(), 'small file');
    });

    it('verify checks existence, size and sha256 and detects corruption', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const { ref } = await store.putContentAddressed('v', deterministicBytes(100_000, 3), {
        format: 'test.blob.v1',
      });
      assert.deepEqual(await store.verify(ref, { rehash: true }), { ok: true, checked: 'rehash' });
      // S3 keeps the sha256 as object metadata; the file backend has no metadata and always re-reads.
      const cheap = await store.verify(ref);
      assert.deepEqual(cheap, { ok: true, checked: backend === 's3' ? 'metadata' : 'rehash' });

      const key = store.keyOf(ref.uri);
      const flipped = Buffer.from(await store.get(key));
      flipped[50_000] ^= 0xff;
      await opened.overwriteRaw(key, flipped);
      for (const rehash of [false, true]) {
        const result = await store.verify(ref, { rehash });
        assert.equal(result.ok, false);
        assert.equal(!result.ok && result.problem, 'sha256');
      }
      await opened.overwriteRaw(key, flipped.subarray(0, 99_999));
      const truncated = await store.verify(ref);
      assert.equal(!truncated.ok && truncated.problem, 'size');
      assert.match(!truncated.ok ? truncated.message : '', /99999 bytes stored, ref says 100000/);
      await store.delete(key);
      const missing = await store.verify(ref);
      assert.equal(!missing.ok && missing.problem, 'missing');

      const healed = await store.putContentAddressed('v', deterministicBytes(100_000, 3), {
        format: 'test.blob.v1',
      });
      assert.equal(healed.reused, false);
      assert.equal((await store.verify(ref, { rehash: true })).ok, true);
    });

    it('content-addresses a multipart stream and publishes it with a multipart server-side copy', async (t) => {
      // 5 MiB parts and copy parts make a 12 MiB stream take S3's multipart upload and copy paths.
      const opened = await openTestStore(t, backend, { partSizeBytes: 5 * mib, copyPartSizeBytes: 5 * mib });
      if (!opened) return;
      const { store } = opened;
      const expected = sha256(await readAll(deterministicBytes(12 * mib, 21)));
      const { ref, reused } = await store.putContentAddressed('big', deterministicBytes(12 * mib, 21), {
        format: 'test.blob.v1',
      });
      assert.equal(reused, false);
      assert.equal(ref.sha256, expected);
      assert.equal(ref.bytes, 12 * mib);
      assert.equal(sha256(await readAll(await store.getStream(ref.uri))), expected);
      assert.deepEqual(await store.verify(ref), {
        ok: true,
        checked: backend === 's3' ? 'metadata' : 'rehash',
      });
      assert.deepEqual(await keysUnder(store, 'big/'), [`big/sha256/${expected}`]);
    });

    it('publishes a manifest only after its files, and readers see no artifact before it', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const manifest = {
        format: 'test.shards',
        formatVersion: 1,
        files: [
          { path: 'shard-0000.bin', bytes: 4 },
          { path: 'shard-0001.bin', bytes: 6, sha256: sha256(Buffer.from('second')) },
        ],
        meta: { rows: 10 },
      };
      await store.put('art/shard-0000.bin', 'once');
      assert.equal(await store.readManifest('art'), undefined, 'data without a manifest is absent');
      await assert.rejects(
        store.publishManifest('art', manifest),
        rejectsWith('NotFound', /shard-0001\.bin: listed in the manifest but not stored/),
      );
      assert.equal(await store.exists('art/manifest.json'), false, 'a failed publish writes no manifest');
      await store.put('art/shard-0001.bin', 'second!');
      await assert.rejects(
        store.publishManifest('art', manifest),
        rejectsWith('Integrity', /7 bytes stored, manifest says 6/),
      );
      await store.put('art/shard-0001.bin', 'second');
      const ref = await store.publishManifest('art/', manifest);
      assert.equal(ref.uri, store.uri('art/manifest.json'));
      assert.equal(ref.format, 'test.shards');
      assert.equal(ref.sha256, sha256(await store.get(ref.uri)));
      assert.deepEqual(await store.readManifest('art'), manifest);

      await assert.rejects(
        store.publishManifest('art', { ...manifest, files: [{ path: '../escape', bytes: 1 }] }),
        rejectsWith('InvalidKey', /\.\./),
      );
      assert.equal(await store.deletePrefix('art/'), 3);
      assert.equal(await store.readManifest('art'), undefined);
    });

    it('rejects traversal, absolute, NUL, empty-segment and reserved keys without touching storage', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const bad = [
        '../escape',
        'a/../../escape',
        'a/..',
        '/etc/passwd',
        'a\0b',
        'a//b',
        './a',
        'a/',
        '',
        '.dpoflow-tmp-x',
      ];
      for (const key of bad) {
        await assert.rejects(store.put(key, 'x'), rejectsWith('InvalidKey'), `put(${JSON.stringify(key)})`);
        await assert.rejects(store.get(key), rejectsWith('InvalidKey'), `get(${JSON.stringify(key)})`);
      }
      await assert.rejects(store.put('../escape', 'x'), (error: unknown) => {
        assert.ok(isStoreError(error, 'InvalidKey'));
        assert.equal(error.retryable, false);
        assert.match(error.message, /"\.\.\/escape" has a "\.\." segment \(path traversal\)/);
        return true;
      });
      await assert.rejects(keysUnder(store, '../'), rejectsWith('InvalidKey'));
      await assert.rejects(store.deletePrefix('a/../'), rejectsWith('InvalidKey'));
      assert.deepEqual(await keysUnder(store), []);
      if (backend === 'file') {
        const outside = join(dirname(fileURLToPath(opened.rootUri)), 'escape');
        await assert.rejects(readFile(outside), { code: 'ENOENT' }, `${outside} must not exist`);
      }
    });
  });
}
