// Child process for store-large.test.ts: streams a deterministic object through a store and reports on stdout.
//   roundtrip <rootUri> <mib>  content-addressed put of <mib> MiB, streamed get back; one JSON line with
//                              both sha256s and maxRSS (KiB) before and after, so the parent can bound memory
//   upload <rootUri> <key>     streams 1 GiB to <key>, printing "streamed <bytes>" per MiB, until killed
// Store options arrive as JSON in DPOFLOW_STORE_CHILD_OPTIONS.

import { createHash } from 'node:crypto';
import { type OpenStoreOptions, openStore } from '../../store/index.ts';
import { deterministicBytes } from './deterministic-bytes.ts';

const mib = 1024 * 1024;
const [mode, rootUri, arg] = process.argv.slice(2);
const options = JSON.parse(process.env.DPOFLOW_STORE_CHILD_OPTIONS ?? '{}') as OpenStoreOptions;
const store = openStore(rootUri, options);

if (mode === 'roundtrip') {
  const bytes = Number(arg) * mib;
  // Warm up on 1 MiB: load the SDK and open a connection, so the baseline holds the code but no big buffers.
  const warm = await store.putContentAddressed('warmup', deterministicBytes(mib, 2), { format: 'warmup' });
  await store.get(warm.ref.uri);
  const baselineKiB = process.resourceUsage().maxRSS;

  const expected = createHash('sha256');
  const started = performance.now();
  const { ref } = await store.putContentAddressed(
    'large',
    (async function* () {
      for await (const chunk of deterministicBytes(bytes, 42)) {
        expected.update(chunk);
        yield chunk;
      }
    })(),
    { format: 'test.large.v1' },
  );
  const putSeconds = (performance.now() - started) / 1000;
  const afterPutKiB = process.resourceUsage().maxRSS;
  const got = createHash('sha256');
  let gotBytes = 0;
  for await (const chunk of await store.getStream(ref.uri)) {
    got.update(chunk);
    gotBytes += chunk.byteLength;
  }
  const getSeconds = (performance.now() - started) / 1000 - putSeconds;
  console.log(
    JSON.stringify({
      expectedSha256: expected.digest('hex'),
      ref,
      gotSha256: got.digest('hex'),
      gotBytes,
      baselineKiB,
      afterPutKiB,
      peakKiB: process.resourceUsage().maxRSS,
      putSeconds,
      getSeconds,
    }),
  );
} else if (mode === 'upload') {
  let reported = 0;
  await store.put(
    arg,
    deterministicBytes(1024 * mib, 5, (bytesSoFar) => {
      if (bytesSoFar - reported < mib) return;
      reported = bytesSoFar;
      console.log(`streamed ${bytesSoFar}`);
    }),
  );
  console.log('finished');
} else {
  throw new Error(`stream-child: unknown mode ${JSON.stringify(mode)}; use roundtrip or upload`);
}
