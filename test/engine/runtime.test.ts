// Tests for engine/runtime.ts: numbers through the worker, float64, reuse, feed checks, execution-provider
// errors, worker error paths, and that a long native run leaves the main thread's event loop free.
import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import {
  allocate,
  type DType,
  elementCount,
  type HostTensor,
  hostTensor,
  onnxDataType,
} from '../../engine/dtype.ts';
import { createSession, RuntimeError, type Session, shutdownRuntime } from '../../engine/runtime.ts';

const { onnx } = onnxProto;

type Dim = number | string;

function valueInfo(name: string, dtype: DType, dims?: readonly Dim[]): onnxProto.onnx.IValueInfoProto {
  const shape = dims && {
    dim: dims.map((dim) => (typeof dim === 'number' ? { dimValue: dim } : { dimParam: dim })),
  };
  return { name, type: { tensorType: { elemType: onnxDataType[dtype], ...(shape ? { shape } : {}) } } };
}

function encodeModel(graph: onnxProto.onnx.IGraphProto): Uint8Array {
  return onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 18 }], graph }).finish();
}

/** c (N, M) = a (N, K) @ b (K, M); K is symbolic on both sides so a mismatch reaches onnxruntime itself. */
function matMulModel(dtype: DType): Uint8Array {
  return encodeModel({
    name: 'matmul',
    node: [{ opType: 'MatMul', input: ['a', 'b'], output: ['c'] }],
    input: [valueInfo('a', dtype, ['N', 'K']), valueInfo('b', dtype, ['K2', 'M'])],
    output: [valueInfo('c', dtype)],
  });
}

/** Three inputs of different dtypes, each passed through, for the feed-check messages. */
const threeInputModel = encodeModel({
  name: 'three',
  node: [
    { opType: 'Identity', input: ['hidden'], output: ['hidden_out'] },
    { opType: 'Identity', input: ['ids'], output: ['ids_out'] },
    { opType: 'Identity', input: ['mask'], output: ['mask_out'] },
  ],
  input: [
    valueInfo('hidden', 'float32', ['B', 4]),
    valueInfo('ids', 'int64', ['B', 'T']),
    valueInfo('mask', 'bool', [2]),
  ],
  output: [valueInfo('hidden_out', 'float32'), valueInfo('ids_out', 'int64'), valueInfo('mask_out', 'bool')],
});

/** x_{i+1} = tanh(x_i @ w) repeated `trips` times in a Loop: a run whose length the test chooses. */
const loopModel = encodeModel({
  name: 'loop',
  node: [
    {
      opType: 'Loop',
      input: ['trips', '', 'x0'],
      output: ['x_final'],
      attribute: [
        {
          name: 'body',
          type: onnx.AttributeProto.AttributeType.GRAPH,
          g: {
            name: 'body',
            node: [
              { opType: 'Identity', input: ['cond_in'], output: ['cond_out'] },
              { opType: 'MatMul', input: ['x', 'w'], output: ['xw'] },
              { opType: 'Tanh', input: ['xw'], output: ['x_next'] },
            ],
            input: [
              valueInfo('iteration', 'int64', []),
              valueInfo('cond_in', 'bool', []),
              valueInfo('x', 'float32'),
            ],
            output: [valueInfo('cond_out', 'bool', []), valueInfo('x_next', 'float32')],
          },
        },
      ],
    },
  ],
  input: [
    valueInfo('trips', 'int64', []),
    valueInfo('x0', 'float32', [256, 256]),
    valueInfo('w', 'float32', [256, 256]),
  ],
  output: [valueInfo('x_final', 'float32')],
});

function randomTensor<D extends 'float32' | 'float64'>(
  dtype: D,
  dims: number[],
  seed: number,
): HostTensor<D> {
  const data = allocate(dtype, elementCount(dims));
  const values = data as Float32Array | Float64Array;
  let state = seed;
  for (let i = 0; i < values.length; i++) {
    state = (state * 1103515245 + 12345) % 2147483648; // small LCG: reproducible, no dependency
    values[i] = state / 2147483648 - 0.5;
  }
  return hostTensor(dtype, dims, data);
}

/** Plain JS reference for (N, K) @ (K, M), accumulated in float64. */
function matMulReference(a: HostTensor, b: HostTensor): Float64Array {
  const [n, k] = a.dims;
  const m = b.dims[1];
  const out = new Float64Array(n * m);
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < m; col++) {
      let sum = 0;
      for (let inner = 0; inner < k; inner++)
        sum += Number(a.data[row * k + inner]) * Number(b.data[inner * m + col]);
      out[row * m + col] = sum;
    }
  }
  return out;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tolerance, `element ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

function loopFeeds(trips: number): Record<string, HostTensor> {
  const w = randomTensor('float32', [256, 256], 7);
  for (let i = 0; i < w.data.length; i++) w.data[i] *= 0.1;
  return {
    trips: { dtype: 'int64', dims: [], data: BigInt64Array.of(BigInt(trips)) },
    x0: randomTensor('float32', [256, 256], 3),
    w,
  };
}

/** Runs `work` while a 10 ms interval ticks on this thread; reports the ticks and the longest gap. */
async function measureEventLoop<T>(
  work: () => Promise<T>,
): Promise<{ result: T; ticks: number; maxGapMs: number; elapsedMs: number }> {
  let ticks = 0;
  let last = performance.now();
  let maxGapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    ticks++;
  }, 10);
  const start = performance.now();
  try {
    const result = await work();
    const end = performance.now();
    maxGapMs = Math.max(maxGapMs, end - last);
    return { result, ticks, maxGapMs, elapsedMs: end - start };
  } finally {
    clearInterval(timer);
  }
}

after(() => shutdownRuntime());

describe('sessions in the worker', () => {
  test('MatMul matches a plain JS computation (float32)', async () => {
    const session = await createSession(matMulModel('float32'));
    const a = randomTensor('float32', [5, 7], 1);
    const b = randomTensor('float32', [7, 3], 2);
    const { c } = await session.run({ a, b });
    assert.equal(c.dtype, 'float32');
    assert.deepEqual(c.dims, [5, 3]);
    assertClose(c.data as Float32Array, matMulReference(a, b), 1e-5);
    assert.deepEqual(session.inputNames, ['a', 'b']);
    assert.deepEqual(session.outputNames, ['c']);
    assert.deepEqual(session.inputs[0], { name: 'a', dtype: 'float32', dims: ['N', 'K'] });
    await session.release();
  });

  test('float64 runs at float64 precision', async () => {
    const session = await createSession(matMulModel('float64'));
    const a = randomTensor('float64', [4, 6], 3);
    const b = randomTensor('float64', [6, 2], 4);
    const { c } = await session.run({ a, b });
    assert.equal(c.dtype, 'float64');
    assert.ok(c.data instanceof Float64Array);
    // float32 rounding would leave errors near 1e-8; float64 stays near 1e-16.
    assertClose(c.data, matMulReference(a, b), 1e-14);
    await session.release();
  });

  test('one session serves 20 runs with different inputs, in the worker and in-process', async () => {
    for (const inWorker of [true, false]) {
      const session = await createSession(matMulModel('float32'), { inWorker, intraOpThreads: 1 });
      for (let step = 0; step < 20; step++) {
        const a = randomTensor('float32', [step + 1, 4], 100 + step);
        const b = randomTensor('float32', [4, 3], 200 + step);
        const { c } = await session.run({ a, b }, ['c']);
        assert.deepEqual(c.dims, [step + 1, 3]);
        assertClose(c.data as Float32Array, matMulReference(a, b), 1e-5);
      }
      await session.release();
    }
  });

  test('feeds are copied by default and detached only with transferFeeds; views send just their elements', async () => {
    const session = await createSession(matMulModel('float32'));
    const a = randomTensor('float32', [2, 3], 5);
    const b = randomTensor('float32', [3, 2], 6);
    const expected = matMulReference(a, b);
    assertClose((await session.run({ a, b })).c.data as Float32Array, expected, 1e-5);
    assert.equal(a.data.length, 6, 'a copied feed stays usable');

    const backing = new Float32Array(1000);
    backing.set(a.data, 500);
    const view = { dtype: 'float32', dims: [2, 3], data: backing.subarray(500, 506) } as const;
    assertClose((await session.run({ a: view, b })).c.data as Float32Array, expected, 1e-5);

    assertClose(
      (await session.run({ a, b }, undefined, { transferFeeds: true })).c.data as Float32Array,
      expected,
      1e-5,
    );
    assert.equal(a.data.length, 0, 'a transferred feed is detached');
    assert.equal(backing.length, 1000);
    await session.release();
  });
});

describe('feed checks', () => {
  test('a bad feed lists every input with its declared and given dtype/dims', async () => {
    const session = await createSession(threeInputModel);
    const error = await session
      .run({
        hidden: { dtype: 'float64', dims: [2, 4], data: new Float64Array(8) },
        mask: { dtype: 'bool', dims: [2], data: new Uint8Array(2) },
        extra: { dtype: 'int32', dims: [1], data: new Int32Array(1) },
      })
      .then(
        () => assert.fail('expected the run to be rejected'),
        (rejection: unknown) => rejection,
      );
    assert.ok(error instanceof RuntimeError);
    assert.equal(error.code, 'invalid-feeds');
    const lines = error.message.split('\n');
    assert.match(lines[0], /invalid feeds for model of \d+ bytes/);
    assert.equal(
      lines[1],
      '  hidden: float32[B, 4], given float64[2, 4]  <-- dtype float64, expected float32',
    );
    assert.equal(lines[2], '  ids: int64[B, T], given nothing  <-- missing');
    assert.equal(lines[3], '  mask: bool[2], given bool[2]');
    assert.equal(lines[4], '  extra: not a model input, given int32[1]  <-- unexpected');
    await session.release();
  });

  test('rank, static dims, element count and fetch names are checked', async () => {
    const session = await createSession(threeInputModel, { inWorker: false });
    const good = {
      hidden: { dtype: 'float32', dims: [1, 4], data: new Float32Array(4) },
      ids: { dtype: 'int64', dims: [1, 3], data: new BigInt64Array(3) },
      mask: { dtype: 'bool', dims: [2], data: Uint8Array.of(1, 0) },
    } satisfies Record<string, HostTensor>;
    const outputs = await session.run(good);
    assert.deepEqual([...outputs.mask_out.data], [1, 0]);

    const cases: [Record<string, HostTensor>, readonly string[] | undefined, RegExp][] = [
      [
        { ...good, hidden: { dtype: 'float32', dims: [4], data: new Float32Array(4) } },
        undefined,
        /hidden: .*<-- rank 1, expected 2/,
      ],
      [
        { ...good, hidden: { dtype: 'float32', dims: [1, 5], data: new Float32Array(5) } },
        undefined,
        /<-- axis 1 is 5, expected 4/,
      ],
      [
        { ...good, mask: { dtype: 'bool', dims: [2], data: new Uint8Array(3) } },
        undefined,
        /<-- data has 3 elements, dims need 2/,
      ],
      [
        good,
        ['ids_out', 'logits'],
        /unknown fetches logits; the model's outputs: hidden_out, ids_out, mask_out/,
      ],
    ];
    for (const [feeds, fetches, expected] of cases) {
      await assert.rejects(session.run(feeds, fetches), (error: RuntimeError) => {
        assert.equal(error.code, 'invalid-feeds');
        assert.match(error.message, expected);
        return true;
      });
    }
    await session.release();
  });
});

describe('errors', () => {
  const ortBinaries = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin');
  const cudaInstalled = existsSync(
    join(ortBinaries, 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'),
  );

  test('requesting cuda without a CUDA build names what was requested and what is available', {
    skip: cudaInstalled,
  }, async () => {
    for (const inWorker of [true, false]) {
      await assert.rejects(
        createSession(matMulModel('float32'), { executionProvider: 'cuda', deviceId: 1, inWorker }),
        (error) => {
          assert.ok(error instanceof RuntimeError);
          assert.equal(error.code, 'execution-provider-unavailable');
          assert.match(error.message, /execution provider 'cuda' \(device 1\) was requested/);
          assert.match(error.message, /can use only: cpu/);
          return true;
        },
      );
    }
  });

  test('an onnxruntime error inside the worker rejects, and the session keeps working', async () => {
    const session = await createSession(matMulModel('float32'));
    const a = randomTensor('float32', [2, 3], 1);
    await assert.rejects(session.run({ a, b: randomTensor('float32', [4, 2], 2) }), (error: RuntimeError) => {
      assert.equal(error.code, 'run-failed');
      assert.match(error.message, /onnxruntime run of model of \d+ bytes failed: .*MatMul/s);
      return true;
    });
    const b = randomTensor('float32', [3, 2], 2);
    assertClose((await session.run({ a, b })).c.data as Float32Array, matMulReference(a, b), 1e-5);
    await session.release();
  });

  test('a model onnxruntime cannot parse rejects with model-load-failed', async () => {
    await assert.rejects(createSession(Uint8Array.of(1, 2, 3, 4)), (error: RuntimeError) => {
      assert.equal(error.code, 'model-load-failed');
      assert.match(error.message, /could not load model of 4 bytes on cpu/);
      return true;
    });
    await assert.rejects(
      createSession('/nonexistent/model.onnx'),
      /could not load model \/nonexistent\/model\.onnx/,
    );
  });

  test('a released session refuses to run', async () => {
    const session = await createSession(matMulModel('float32'));
    await session.release();
    await session.release(); // idempotent
    await assert.rejects(session.run({}), (error: RuntimeError) => error.code === 'session-released');
  });

  test('shutting the worker down rejects runs in flight; the next session starts a fresh worker', async () => {
    const session = await createSession(loopModel, { intraOpThreads: 1 });
    const inFlight = assert.rejects(session.run(loopFeeds(1000)), (error: RuntimeError) => {
      assert.equal(error.code, 'worker-stopped');
      assert.match(error.message, /shut down/);
      return true;
    });
    await shutdownRuntime();
    await inFlight;
    await assert.rejects(session.run(loopFeeds(1)), (error: RuntimeError) => error.code === 'worker-stopped');
    const fresh = await createSession(matMulModel('float32'));
    const a = randomTensor('float32', [1, 2], 3);
    const b = randomTensor('float32', [2, 1], 4);
    assertClose((await fresh.run({ a, b })).c.data as Float32Array, matMulReference(a, b), 1e-5);
    await fresh.release();
  });
});

describe('event loop', () => {
  let session: Session;
  let tripsForOneAndHalfSeconds = 0;

  test('a long run in the worker leaves the main thread free', async (t) => {
    session = await createSession(loopModel, { intraOpThreads: 1 });
    const probeStart = performance.now();
    await session.run(loopFeeds(200));
    const msPerTrip = (performance.now() - probeStart) / 200;
    tripsForOneAndHalfSeconds = Math.min(20_000, Math.max(200, Math.round(1500 / msPerTrip)));

    const measured = await measureEventLoop(() => session.run(loopFeeds(tripsForOneAndHalfSeconds)));
    t.diagnostic(
      `worker: ${tripsForOneAndHalfSeconds} trips in ${measured.elapsedMs.toFixed(0)} ms, ` +
        `${measured.ticks} ticks of 10 ms, longest gap ${measured.maxGapMs.toFixed(1)} ms`,
    );
    assert.deepEqual(measured.result.x_final.dims, [256, 256]);
    assert.ok(measured.elapsedMs > 750, `the run should last about 1.5 s, took ${measured.elapsedMs} ms`);
    assert.ok(
      measured.ticks >= measured.elapsedMs / 10 / 3,
      `only ${measured.ticks} ticks in ${measured.elapsedMs} ms`,
    );
    assert.ok(measured.maxGapMs < 200, `the event loop stalled for ${measured.maxGapMs} ms`);
    await session.release();
  });

  test('in-process runs block the event loop (noted, not asserted)', async (t) => {
    const local = await createSession(loopModel, { intraOpThreads: 1, inWorker: false });
    const trips = Math.max(10, Math.round(tripsForOneAndHalfSeconds / 4));
    const measured = await measureEventLoop(() => local.run(loopFeeds(trips)));
    t.diagnostic(
      `in-process: ${trips} trips in ${measured.elapsedMs.toFixed(0)} ms, ` +
        `${measured.ticks} ticks, longest gap ${measured.maxGapMs.toFixed(1)} ms`,
    );
    assert.deepEqual(measured.result.x_final.dims, [256, 256]);
    await local.release();
  });

  test('an idle worker does not keep a plain `node --import tsx` process alive', () => {
    const child = runScript(`
      const session = await createSession(model('${Buffer.from(matMulModel('float64')).toString('base64')}'));
      const { c } = await session.run({
        a: { dtype: 'float64', dims: [1, 2], data: Float64Array.of(1, 2) },
        b: { dtype: 'float64', dims: [2, 1], data: Float64Array.of(3, 4) },
      });
      console.log(c.data[0]);`);
    assert.equal(child.error, undefined, 'the child should exit on its own without release() or shutdown');
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout.trim(), '11');
  });

  test('process.exit() during a native run in the worker exits cleanly with its code', () => {
    // Node tears workers down on exit; mid-run that used to abort the process (SIGABRT, status 134).
    const trips = Math.max(200, Math.round(tripsForOneAndHalfSeconds / 2));
    const child = runScript(`
      const session = await createSession(model('${Buffer.from(loopModel).toString('base64')}'), { intraOpThreads: 1 });
      let finished = false;
      session
        .run({
          trips: { dtype: 'int64', dims: [], data: BigInt64Array.of(${trips}n) },
          x0: { dtype: 'float32', dims: [256, 256], data: new Float32Array(65536) },
          w: { dtype: 'float32', dims: [256, 256], data: new Float32Array(65536) },
        })
        .then(() => { finished = true; });
      setTimeout(() => { console.log('run finished before exit: ' + finished); process.exit(7); }, 100);`);
    assert.equal(child.signal, null, child.stderr);
    assert.equal(child.status, 7, child.stderr);
    assert.equal(child.stdout.trim(), 'run finished before exit: false');
  });
});

/** Runs an ES module under `node --import tsx` with createSession and a base64 model decoder in scope. */
function runScript(body: string): SpawnSyncReturns<string> {
  const script = `
    import { createSession } from '${new URL('../../engine/runtime.ts', import.meta.url).href}';
    const model = (base64) => new Uint8Array(Buffer.from(base64, 'base64'));
    ${body}`;
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    encoding: 'utf8',
    timeout: 20_000,
  });
}
