// Large objects on both backends, each in a child process (stream-child.ts): a 320 MiB stream round trip whose
// peak memory stays far below its size, and an upload SIGKILLed midway that must leave no object behind.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isStoreError, type OpenStoreOptions } from '../../store/index.ts';
import { backendNames, openTestStore } from './backends.ts';

const childScript = fileURLToPath(new URL('./stream-child.ts', import.meta.url));
const mib = 1024 * 1024;
const largeMiB = 320;
// Peak RSS over the child's warmed-up baseline: half the object. Growth does not scale with size (a 1 GiB
// object measured 73 MiB on MinIO); its floor is lib-storage's in-flight parts plus Node's lazy buffer frees.
const maxGrowthMiB = largeMiB / 2;
const killAfterBytes = 48 * mib; // well past the first 5 MiB part: a multipart upload has begun

function startChild(args: string[], options: OpenStoreOptions) {
  return spawn(process.execPath, ['--import', 'tsx', childScript, ...args], {
    env: { ...process.env, DPOFLOW_STORE_CHILD_OPTIONS: JSON.stringify(options) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

async function runChild(args: string[], options: OpenStoreOptions): Promise<string> {
  const child = startChild(args, options);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, `stream-child ${args.join(' ')} exited ${code}:\n${stderr}`);
  return stdout;
}

for (const backend of backendNames) {
  describe(`large streams on ${backend}`, () => {
    it(`round-trips a ${largeMiB} MiB stream with peak RSS growth under ${maxGrowthMiB} MiB`, async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const report = JSON.parse(
        await runChild(['roundtrip', opened.rootUri, String(largeMiB)], opened.options),
      );
      assert.equal(report.ref.bytes, largeMiB * mib);
      assert.equal(report.gotBytes, largeMiB * mib);
      assert.equal(report.ref.sha256, report.expectedSha256, 'ref sha256 is the generated content sha256');
      assert.equal(report.gotSha256, report.expectedSha256, 'streamed back the same bytes');
      const growthMiB = (report.peakKiB - report.baselineKiB) / 1024;
      t.diagnostic(
        `${backend}: baseline ${(report.baselineKiB / 1024).toFixed(0)} MiB, peak ${(report.peakKiB / 1024).toFixed(0)} MiB, ` +
          `growth ${growthMiB.toFixed(1)} MiB; put ${report.putSeconds.toFixed(1)} s, get ${report.getSeconds.toFixed(1)} s`,
      );
      assert.ok(
        growthMiB < maxGrowthMiB,
        `peak RSS grew ${growthMiB.toFixed(1)} MiB for a ${largeMiB} MiB object`,
      );
      await opened.store.deletePrefix('');
    });

    it('leaves no object under the final key when the writer is SIGKILLed midway', async (t) => {
      const opened = await openTestStore(t, backend);
      if (!opened) return;
      const { store } = opened;
      const key = 'killed/checkpoint.bin';
      const child = startChild(['upload', opened.rootUri, key], opened.options);
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.once('exit', (_, signal) => resolve(signal)),
      );
      let streamed = 0;
      for await (const line of createInterface({ input: child.stdout })) {
        streamed = Number(line.replace('streamed ', ''));
        if (streamed >= killAfterBytes) break;
      }
      assert.ok(streamed >= killAfterBytes, `child stopped after ${streamed} bytes:\n${stderr}`);
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');

      assert.equal(await store.exists(key), false);
      await assert.rejects(store.get(key), (error) => isStoreError(error, 'NotFound'));
      const listed: string[] = [];
      for await (const entry of store.list('')) listed.push(entry.key);
      assert.deepEqual(listed, [], 'neither the final key nor a temp object is listed');

      // What the kill left: a temp file on disk, an incomplete multipart upload on S3. Sweeping removes it.
      const swept = await store.sweepIncomplete({ olderThanMs: 0 });
      assert.deepEqual(
        swept,
        backend === 'file'
          ? { deletedTempObjects: 1, abortedUploads: 0 }
          : { deletedTempObjects: 0, abortedUploads: 1 },
      );
      assert.deepEqual(await store.sweepIncomplete({ olderThanMs: 0 }), {
        deletedTempObjects: 0,
        abortedUploads: 0,
      });
    });
  });
}
