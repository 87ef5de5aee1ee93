// Tests for engine/safetensors.ts and engine/parameters.ts: round trips for every dtype, metadata, files,
// spec-level bytes built by hand, each malformed-header error, half-precision conversion, parameter helpers.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { HostTensor } from '../../engine/dtype.ts';
import {
  cloneParameters,
  loadParameters,
  maxAbsDiff,
  ParameterMismatchError,
  type ParameterSet,
  parameterCount,
  parametersEqual,
  parametersFromSafetensors,
  parametersToSafetensors,
  saveParameters,
} from '../../engine/parameters.ts';
import {
  bfloat16ToFloat32,
  decodeSafetensors,
  encodeSafetensors,
  float16ToFloat32,
  hostFromStored,
  readSafetensorsFile,
  type SafetensorsDType,
  SafetensorsError,
  SafetensorsFile,
  type StoredTensor,
  safetensorsItemSize,
  writeSafetensorsFile,
} from '../../engine/safetensors.ts';

const workDir = await mkdtemp(join(tmpdir(), 'dpoflow-safetensors-'));
after(() => rm(workDir, { recursive: true, force: true }));

function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) % 2147483648;
    bytes[i] = state >> 23;
  }
  return bytes;
}

function stored(dtype: SafetensorsDType, shape: number[], seed: number): StoredTensor {
  const count = shape.reduce((product, dim) => product * dim, 1);
  return { dtype, shape, bytes: pseudoRandomBytes(count * safetensorsItemSize[dtype], seed) };
}

/** A safetensors file assembled by hand: length prefix, JSON exactly as given (no padding), data. */
function handBuilt(headerJson: string, data: Uint8Array, declaredLength?: number): Uint8Array {
  const json = new TextEncoder().encode(headerJson);
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(declaredLength ?? json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

function samplesParameters(): ParameterSet {
  return new Map<string, HostTensor>([
    ['wte.weight', { dtype: 'float32', dims: [3, 2], data: Float32Array.of(0.5, -1, 2.25, 3, -0, 1e-30) }],
    ['ln.bias', { dtype: 'float64', dims: [2], data: Float64Array.of(Math.PI, -Math.E) }],
    ['half', { dtype: 'float16', dims: [3], data: Uint16Array.of(0x3c00, 0xc000, 0x7bff) }],
    ['position_ids', { dtype: 'int64', dims: [1, 3], data: BigInt64Array.of(0n, 1n, 9007199254740993n) }],
    ['counts', { dtype: 'int32', dims: [], data: Int32Array.of(-7) }],
    ['mask', { dtype: 'bool', dims: [4], data: Uint8Array.of(1, 0, 0, 1) }],
    ['empty', { dtype: 'float32', dims: [0, 5], data: new Float32Array(0) }],
  ]);
}

describe('round trips', () => {
  test('every dtype survives encode/decode byte for byte, each tensor aligned to its item size', () => {
    const dtypes: SafetensorsDType[] = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'U8', 'BOOL'];
    const tensors = new Map<string, StoredTensor>();
    dtypes.forEach((dtype, index) => {
      tensors.set(`t_${dtype}`, stored(dtype, [index + 1, 3], index));
      tensors.set(`scalar_${dtype}`, stored(dtype, [], 100 + index));
      tensors.set(`empty_${dtype}`, stored(dtype, [0, 4], 0));
    });
    const bytes = encodeSafetensors(tensors);
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal((8 + headerLength) % 8, 0, 'data starts 8-byte aligned');

    const decoded = decodeSafetensors(bytes);
    assert.deepEqual([...decoded.tensors.keys()].sort(), [...tensors.keys()].sort());
    for (const [name, original] of tensors) {
      const back = decoded.tensors.get(name)!;
      assert.equal(back.dtype, original.dtype);
      assert.deepEqual(back.shape, original.shape);
      assert.deepEqual(back.bytes, original.bytes, name);
      assert.equal(back.bytes.byteOffset % safetensorsItemSize[back.dtype], 0, `${name} is aligned`);
    }
    assert.deepEqual(decoded.metadata, {});
  });

  test('parameters of every HostTensor dtype round-trip; aligned tensors alias the bytes', () => {
    const parameters = samplesParameters();
    const bytes = parametersToSafetensors(parameters);
    const { parameters: back } = parametersFromSafetensors(bytes);
    assert.ok(parametersEqual(parameters, back));
    for (const [name, tensor] of parameters) {
      const loaded = back.get(name)!;
      assert.equal(loaded.dtype, tensor.dtype, name);
      assert.equal(loaded.data.constructor, tensor.data.constructor, name);
      assert.equal(loaded.data.buffer, bytes.buffer, `${name} is a view, not a copy`);
    }
    assert.equal((back.get('position_ids')!.data as BigInt64Array)[2], 9007199254740993n);
    assert.ok(Object.is((back.get('wte.weight')!.data as Float32Array)[4], -0));
  });

  test('metadata round-trips, and equal contents give equal bytes whatever the insertion order', () => {
    const metadata = { format: 'pt', step: '120', note: 'β=0.1 ✓', '': 'empty key' };
    const bytes = parametersToSafetensors(samplesParameters(), metadata);
    assert.deepEqual(parametersFromSafetensors(bytes).metadata, metadata);

    const reversed = new Map([...samplesParameters()].reverse());
    const reorderedMetadata = Object.fromEntries(Object.entries(metadata).reverse());
    assert.deepEqual(parametersToSafetensors(reversed, reorderedMetadata), bytes);
  });

  test('files: streaming write, per-tensor read, subsets, no partial file left behind', async () => {
    const path = join(workDir, 'model.safetensors');
    const parameters = samplesParameters();
    await saveParameters(path, parameters, { step: '7' });
    assert.deepEqual(
      (await readdir(workDir)).filter((file) => file.startsWith('model')),
      ['model.safetensors'],
    );
    const onDisk = await readFile(path);
    assert.deepEqual(new Uint8Array(onDisk), parametersToSafetensors(parameters, { step: '7' }));

    const loaded = await loadParameters(path);
    assert.ok(parametersEqual(parameters, loaded.parameters));
    assert.deepEqual(loaded.metadata, { step: '7' });

    const subset = await loadParameters(path, { names: ['mask', 'ln.bias'] });
    assert.deepEqual([...subset.parameters.keys()], ['mask', 'ln.bias']);
    await assert.rejects(
      loadParameters(path, { names: ['lm_head.weight'] }),
      (error: SafetensorsError) =>
        error.tensor === 'lm_head.weight' &&
        error.message.startsWith(`${path}: tensor 'lm_head.weight': not in the file`),
    );

    const raw = await readSafetensorsFile(path);
    const fromBytes = decodeSafetensors(new Uint8Array(onDisk));
    for (const [name, tensor] of fromBytes.tensors)
      assert.deepEqual(raw.tensors.get(name)!.bytes, tensor.bytes);

    const stream = join(workDir, 'stored.safetensors');
    await writeSafetensorsFile(stream, fromBytes.tensors, fromBytes.metadata);
    assert.deepEqual(await readFile(stream), onDisk);
  });
});

describe('spec-level bytes', () => {
  test('the writer produces exactly the bytes the format prescribes for a tiny tensor', () => {
    // Reference writer's layout: __metadata__ first, keys dtype/shape/data_offsets, compact JSON padded with
    // spaces to a multiple of 8, then float32 little-endian: 1.0 = 00 00 80 3f, -2.0 = 00 00 00 c0.
    const json = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
    assert.equal(padded.length, 88);
    // biome-ignore format: bytes laid out as in the file
    const expected = Uint8Array.from([
      88, 0, 0, 0, 0, 0, 0, 0,
      ...new TextEncoder().encode(padded),
      0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0,
    ]);
    const parameters: ParameterSet = new Map([
      ['a', { dtype: 'float32', dims: [2], data: Float32Array.of(1, -2) }],
    ]);
    assert.deepEqual(parametersToSafetensors(parameters, { format: 'pt' }), expected);
  });

  test('an unpadded header from an older writer decodes, unaligned data is copied into aligned arrays', () => {
    // 8 + 61 header bytes: the data starts at byte 69, not a multiple of 4.
    const json = '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}} ';
    assert.equal(json.length, 61);
    const data = new Uint8Array(new Int32Array([1, -2, 300000, 2147483647]).buffer);
    const { parameters } = parametersFromSafetensors(handBuilt(json, data));
    const tensor = parameters.get('test')!;
    assert.deepEqual(tensor.dims, [2, 2]);
    assert.deepEqual([...(tensor.data as Int32Array)], [1, -2, 300000, 2147483647]);
  });
});

describe('malformed files', () => {
  const f32 = (begin: number, end: number, shape = '[2]') =>
    `{"dtype":"F32","shape":${shape},"data_offsets":[${begin},${end}]}`;
  const cases: [string, Uint8Array, RegExp, string | undefined][] = [
    [
      'shorter than the length prefix',
      new Uint8Array(5),
      /^bad: truncated: 5 bytes, too short for the 8-byte header length$/,
      undefined,
    ],
    [
      'header length beyond the file',
      handBuilt('{}', new Uint8Array(10), 1000),
      /^bad: header length 1000 is beyond the file size \(20 bytes\)$/,
      undefined,
    ],
    ['invalid JSON', handBuilt('{"a":', new Uint8Array(0)), /^bad: header is not valid JSON: /, undefined],
    [
      'invalid UTF-8',
      handBuilt('{"x":1}', new Uint8Array(0)).fill(0xff, 10, 11),
      /^bad: header is not valid JSON: /,
      undefined,
    ],
    [
      'header not an object',
      handBuilt('[1,2]', new Uint8Array(0)),
      /^bad: header is not a JSON object$/,
      undefined,
    ],
    [
      'metadata value not a string',
      handBuilt('{"__metadata__":{"step":3}}', new Uint8Array(0)),
      /^bad: __metadata__\.step is number, not a string$/,
      undefined,
    ],
    [
      'unknown dtype',
      handBuilt('{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}', new Uint8Array(1)),
      /^bad: tensor 'a': unknown dtype "F8"; known: I64, F64, F32, I32, BF16, F16, U8, BOOL$/,
      'a',
    ],
    [
      'negative size in shape',
      handBuilt(`{"a":${f32(0, 8, '[-2]')}}`, new Uint8Array(8)),
      /^bad: tensor 'a': shape \[-2\] is not a list of sizes$/,
      'a',
    ],
    [
      'offsets not a pair',
      handBuilt('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}}', new Uint8Array(1)),
      /^bad: tensor 'a': data_offsets \[0\] is not a pair of byte offsets$/,
      'a',
    ],
    [
      'begin after end',
      handBuilt(`{"a":${f32(8, 0)}}`, new Uint8Array(8)),
      /^bad: tensor 'a': data_offsets \[8, 0\] are out of range: begin after end$/,
      'a',
    ],
    [
      'byte length not product(shape) · itemsize',
      handBuilt(`{"a":${f32(0, 8, '[3]')}}`, new Uint8Array(8)),
      /^bad: tensor 'a': byte length 8 does not match shape \[3\] of F32 \(12 bytes\)$/,
      'a',
    ],
    [
      'overlapping tensors',
      handBuilt(`{"a":${f32(0, 8)},"b":${f32(4, 12)}}`, new Uint8Array(12)),
      /^bad: tensor 'b': data_offsets \[4, 12\] overlap tensor 'a' \(ends at 8\)$/,
      'b',
    ],
    [
      'a gap between tensors',
      handBuilt(`{"a":${f32(0, 8)},"b":${f32(12, 20)}}`, new Uint8Array(20)),
      /^bad: tensor 'b': data_offsets \[12, 20\] are not contiguous: 4 unused bytes after tensor 'a'$/,
      'b',
    ],
    [
      'a gap at the start',
      handBuilt(`{"a":${f32(4, 12)}}`, new Uint8Array(12)),
      /^bad: tensor 'a': .* 4 unused bytes at the start of the data$/,
      'a',
    ],
    [
      'truncated data',
      handBuilt(`{"a":${f32(0, 8)},"b":${f32(8, 16)}}`, new Uint8Array(12)),
      /^bad: truncated: the header describes 16 data bytes but only 12 follow it$/,
      undefined,
    ],
    [
      'bytes after the last tensor',
      handBuilt(`{"a":${f32(0, 8)}}`, new Uint8Array(11)),
      /^bad: 3 bytes after the last tensor belong to none$/,
      undefined,
    ],
  ];
  for (const [what, bytes, expected, tensor] of cases) {
    test(what, () => {
      assert.throws(
        () => decodeSafetensors(bytes, 'bad'),
        (error: unknown) => {
          assert.ok(error instanceof SafetensorsError);
          assert.match(error.message, expected);
          assert.equal(error.tensor, tensor);
          assert.equal(error.source, 'bad');
          return true;
        },
      );
    });
  }

  test('file errors name the file: a truncated checkpoint and a bad header', async () => {
    const path = join(workDir, 'cut.safetensors');
    await saveParameters(path, samplesParameters());
    const { size } = await stat(path);
    await truncate(path, size - 3);
    await assert.rejects(SafetensorsFile.open(path), (error: SafetensorsError) => {
      assert.match(
        error.message,
        new RegExp(`^${path}: truncated: the header describes \\d+ data bytes but only \\d+ follow it$`),
      );
      return true;
    });
    const garbage = join(workDir, 'garbage.safetensors');
    await writeFile(garbage, handBuilt('not json', new Uint8Array(0)));
    await assert.rejects(loadParameters(garbage), (error: SafetensorsError) =>
      error.message.startsWith(`${garbage}: header is not valid JSON`),
    );
  });

  test('writing refuses bytes that do not match the shape, naming the tensor', async () => {
    const bad = new Map([['w', { dtype: 'F32' as const, shape: [3], bytes: new Uint8Array(8) }]]);
    assert.throws(
      () => encodeSafetensors(bad),
      /^SafetensorsError: safetensors bytes: tensor 'w': has 8 bytes, shape \[3\] of F32 needs 12$/,
    );
    const path = join(workDir, 'refused.safetensors');
    await assert.rejects(
      writeSafetensorsFile(path, bad),
      (error: SafetensorsError) => error.source === path && error.tensor === 'w',
    );
  });
});

describe('half precision', () => {
  test('bfloat16 → float32 on known values', () => {
    const bits = Uint16Array.of(0x3f80, 0xc020, 0x4049, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x4780);
    const values = bfloat16ToFloat32(bits);
    assert.deepEqual([...values], [1, -2.5, 3.140625, 2 ** -133, Infinity, -Infinity, Number.NaN, -0, 65536]);
    assert.ok(Object.is(values[7], -0));
  });

  test('float16 → float32 on known values, subnormals included', () => {
    const bits = Uint16Array.of(
      0x3c00,
      0xc000,
      0x7bff,
      0x0001,
      0x03ff,
      0x0400,
      0x7c00,
      0x7e00,
      0x8000,
      0x3555,
    );
    const expected = [
      1,
      -2,
      65504,
      2 ** -24,
      1023 * 2 ** -24,
      2 ** -14,
      Infinity,
      Number.NaN,
      -0,
      0.333251953125,
    ];
    const values = float16ToFloat32(bits);
    assert.deepEqual([...values], expected);
    assert.ok(Object.is(values[8], -0));
  });

  test('a BF16 checkpoint loads as float32 only on request; F16 stays float16 unless asked', async () => {
    const bf16 = {
      dtype: 'BF16' as const,
      shape: [2],
      bytes: new Uint8Array(Uint16Array.of(0x3fc0, 0xbe00).buffer),
    };
    const f16 = { dtype: 'F16' as const, shape: [1], bytes: new Uint8Array(Uint16Array.of(0x3800).buffer) };
    const path = join(workDir, 'bf16.safetensors');
    await writeSafetensorsFile(
      path,
      new Map<string, StoredTensor>([
        ['w', bf16],
        ['h', f16],
      ]),
    );

    await assert.rejects(loadParameters(path), (error: SafetensorsError) => {
      assert.equal(error.tensor, 'w');
      assert.match(
        error.message,
        /dtype BF16 has no HostTensor equivalent; load with \{ halfToFloat32: true \}/,
      );
      return true;
    });
    const { parameters } = await loadParameters(path, { halfToFloat32: true });
    assert.deepEqual(parameters.get('w'), {
      dtype: 'float32',
      dims: [2],
      data: Float32Array.of(1.5, -0.125),
    });
    assert.deepEqual(parameters.get('h'), { dtype: 'float32', dims: [1], data: Float32Array.of(0.5) });
    assert.equal(hostFromStored('h', f16).dtype, 'float16');
    assert.throws(
      () => hostFromStored('bytes', { dtype: 'U8', shape: [1], bytes: Uint8Array.of(3) }),
      /tensor 'bytes': dtype U8 has no HostTensor/,
    );
  });
});

describe('parameter helpers', () => {
  test('count, clone, maxAbsDiff and equality', () => {
    const parameters = samplesParameters();
    assert.equal(parameterCount(parameters), 6 + 2 + 3 + 3 + 1 + 4 + 0);

    const clone = cloneParameters(parameters);
    assert.ok(parametersEqual(parameters, clone));
    (clone.get('wte.weight')!.data as Float32Array)[0] += 0.25;
    (clone.get('position_ids')!.data as BigInt64Array)[0] = -3n;
    (clone.get('half')!.data as Uint16Array)[0] = 0x3e00; // 1 → 1.5
    assert.equal((parameters.get('wte.weight')!.data as Float32Array)[0], 0.5, 'the clone owns its buffers');
    assert.equal(maxAbsDiff(parameters, clone), 3);
    assert.ok(!parametersEqual(parameters, clone, 2.9));
    assert.ok(parametersEqual(parameters, clone, 3));

    const nanA: ParameterSet = new Map([
      ['x', { dtype: 'float64', dims: [2], data: Float64Array.of(Number.NaN, 1) }],
    ]);
    const nanB = cloneParameters(nanA);
    assert.equal(maxAbsDiff(nanA, nanB), 0, 'NaN in both places counts as equal');
    (nanB.get('x')!.data as Float64Array)[1] = Number.NaN;
    assert.equal(maxAbsDiff(nanA, nanB), Infinity);
  });

  test('comparing mismatched sets names the difference', () => {
    const parameters = samplesParameters();
    const renamed = new Map(parameters);
    renamed.delete('mask');
    renamed.set('mask2', parameters.get('mask')!);
    assert.throws(
      () => maxAbsDiff(parameters, renamed),
      (error: unknown) => {
        assert.ok(error instanceof ParameterMismatchError);
        assert.match(error.message, /only in the first \[mask\], only in the second \[mask2\]/);
        return true;
      },
    );
    const reshaped = new Map(parameters);
    reshaped.set('ln.bias', { dtype: 'float64', dims: [1, 2], data: Float64Array.of(1, 2) });
    assert.throws(() => maxAbsDiff(parameters, reshaped), /'ln\.bias' is float64\[2\] vs float64\[1, 2\]/);
    assert.ok(!parametersEqual(parameters, reshaped));
  });
});
