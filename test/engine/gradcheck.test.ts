// Every op's gradient (and every composite's) against central finite differences of the ONNX forward pass,
// on seeded random inputs, including broadcasting, batched MatMul, repeated gather indices and named dims.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostTensor } from '../../engine/dtype.ts';
import * as F from '../../engine/functional.ts';
import type { Graph, Tensor } from '../../engine/graph.ts';
import * as op from '../../engine/ops/index.ts';
import { gradientRules } from '../../engine/ops/registry.ts';
import { forwardOpTypes, type GradcheckSpec, gradcheck } from './gradcheck-helpers.ts';

/** float64 central differences (h = 1e-6) are accurate to ~1e-9 relative here; 1e-6 leaves a wide margin. */
const FLOAT64_TOLERANCE = 1e-6;
/**
 * For ops ONNX Runtime's CPU provider runs only in float32 (Erf, hence exact GELU). Inputs are float64 and
 * cast to float32 around the op, so each perturbed loss carries ~|y|·6e-8 rounding per affected output;
 * divided by 2h (h = 1e-3) that is ~3e-5·|y|, and the analytic gradient itself is rounded to float32
 * (~1e-7). 1e-3 is a few times that rounding floor and still orders of magnitude below a wrong rule.
 */
const FLOAT32_TOLERANCE = 1e-3;

interface Case extends Omit<GradcheckSpec, 'dtype'> {
  name: string;
  dtype?: GradcheckSpec['dtype'];
}

const int64 = (graph: Graph, dims: number[], values: number[]) =>
  graph.constant(hostTensor('int64', dims, BigInt64Array.from(values, BigInt)));
const bools = (graph: Graph, dims: number[], values: number[]) =>
  graph.constant(hostTensor('bool', dims, Uint8Array.from(values)));
const unaryCase = (
  name: string,
  f: (x: Tensor) => Tensor,
  values: 'normal' | 'positive' = 'normal',
): Case => ({
  name,
  inputs: [{ name: 'x', dims: [3, 4], values }],
  build: ([x]) => f(x),
});

const cases: Case[] = [
  // ---- elementwise, with broadcasting
  {
    name: 'Add broadcast [3,1,4] + [5,4]',
    inputs: [
      { name: 'a', dims: [3, 1, 4] },
      { name: 'b', dims: [5, 4] },
    ],
    build: ([a, b]) => op.add(a, b),
  },
  {
    name: 'Sub broadcast [2,3] - [3]',
    inputs: [
      { name: 'a', dims: [2, 3] },
      { name: 'b', dims: [3] },
    ],
    build: ([a, b]) => op.sub(a, b),
  },
  {
    name: 'Mul broadcast [2,1,3] * [4,1]',
    inputs: [
      { name: 'a', dims: [2, 1, 3] },
      { name: 'b', dims: [4, 1] },
    ],
    build: ([a, b]) => op.mul(a, b),
  },
  {
    name: 'Div broadcast [2,3] / [3]',
    inputs: [
      { name: 'a', dims: [2, 3] },
      { name: 'b', dims: [3], values: 'positive' },
    ],
    build: ([a, b]) => op.div(a, b),
  },
  {
    name: 'Pow with tensor exponent [2,3] ^ [3]',
    inputs: [
      { name: 'a', dims: [2, 3], values: 'positive' },
      { name: 'b', dims: [3] },
    ],
    build: ([a, b]) => op.pow(a, b),
  },
  unaryCase('Pow with constant exponents x^3 and x^2', (x) => op.add(op.pow(x, 3), op.pow(x, 2))),
  unaryCase('Neg', op.neg),
  unaryCase('Sqrt', op.sqrt, 'positive'),
  unaryCase('Reciprocal', op.reciprocal, 'positive'),
  unaryCase('Exp', op.exp),
  unaryCase('Log', op.log, 'positive'),
  unaryCase('Tanh', op.tanh),
  unaryCase('Sigmoid', op.sigmoid),
  unaryCase('Relu', op.relu),
  unaryCase('Sin', op.sin),
  unaryCase('Cos', op.cos),
  { ...unaryCase('Erf (float32 kernel only)', op.erf), dtype: 'float32' },
  {
    name: 'Where with broadcast condition',
    inputs: [
      { name: 'a', dims: [2, 3] },
      { name: 'b', dims: [3] },
    ],
    build: ([a, b], graph) => op.where(bools(graph, [3], [1, 0, 1]), a, b),
  },
  // ---- matmul
  {
    name: 'MatMul [4,3] @ [3,2]',
    inputs: [
      { name: 'a', dims: [4, 3] },
      { name: 'b', dims: [3, 2] },
    ],
    build: ([a, b]) => op.matmul(a, b),
  },
  {
    name: 'MatMul batched activations @ weight [2,3,4] @ [4,5]',
    inputs: [
      { name: 'a', dims: [2, 3, 4] },
      { name: 'b', dims: [4, 5] },
    ],
    build: ([a, b]) => op.matmul(a, b),
  },
  {
    name: 'MatMul broadcast batch dims [2,1,3,4] @ [5,4,2]',
    inputs: [
      { name: 'a', dims: [2, 1, 3, 4] },
      { name: 'b', dims: [5, 4, 2] },
    ],
    build: ([a, b]) => op.matmul(a, b),
  },
  {
    name: 'MatMul matrix @ batch [3,4] @ [2,4,5]',
    inputs: [
      { name: 'a', dims: [3, 4] },
      { name: 'b', dims: [2, 4, 5] },
    ],
    build: ([a, b]) => op.matmul(a, b),
  },
  // ---- reductions and normalizations
  {
    name: 'ReduceSum axis 1 and all axes',
    inputs: [{ name: 'x', dims: [2, 3, 4] }],
    build: ([x]) => [op.reduceSum(x, 1), op.reduceSum(x)],
  },
  {
    name: 'ReduceMean axes [0,2] keepDims',
    inputs: [{ name: 'x', dims: [2, 3, 4] }],
    build: ([x]) => op.reduceMean(x, [0, 2], true),
  },
  {
    name: 'ReduceMax last axis',
    inputs: [{ name: 'x', dims: [3, 5] }],
    build: ([x]) => op.reduceMax(x, -1),
  },
  {
    name: 'Softmax last axis and axis 1',
    inputs: [{ name: 'x', dims: [2, 3, 4] }],
    build: ([x]) => [op.softmax(x, -1), op.softmax(x, 1)],
  },
  unaryCase('LogSoftmax', (x) => op.logSoftmax(x, -1)),
  {
    name: 'LayerNormalization last axis, scale and bias',
    inputs: [
      { name: 'x', dims: [2, 3, 4] },
      { name: 'scale', dims: [4] },
      { name: 'bias', dims: [4] },
    ],
    build: ([x, scale, bias]) => op.layerNorm(x, scale, bias),
  },
  {
    name: 'LayerNormalization over axes [1,2], no bias',
    inputs: [
      { name: 'x', dims: [2, 3, 4] },
      { name: 'scale', dims: [3, 4] },
    ],
    build: ([x, scale]) => op.layerNorm(x, scale, undefined, { axis: 1 }),
  },
  {
    name: 'LayerNormalization float32 (reuses the kernel statistics)',
    dtype: 'float32',
    inputs: [
      { name: 'x', dims: [2, 3, 4] },
      { name: 'scale', dims: [4] },
      { name: 'bias', dims: [4] },
    ],
    build: ([x, scale, bias]) => op.layerNorm(x, scale, bias),
  },
  // ---- indexing
  {
    name: 'Gather embedding rows with repeated indices',
    inputs: [{ name: 'table', dims: [5, 3] }],
    build: ([table], graph) => op.gather(table, int64(graph, [2, 3], [1, 3, 1, 0, 1, 1])),
  },
  {
    name: 'GatherElements token picks with repeats (axis 2 and axis 1)',
    inputs: [{ name: 'x', dims: [2, 3, 5] }],
    build: ([x], graph) => [
      op.gatherElements(x, int64(graph, [2, 3, 1], [4, 0, 4, 2, 2, 1]), 2),
      op.gatherElements(
        x,
        int64(graph, [2, 2, 5], [0, 2, 2, 1, 0, 2, 2, 2, 1, 1, 0, 0, 1, 2, 1, 1, 1, 0, 0, 2]),
        1,
      ),
    ],
  },
  // ---- shape ops
  {
    name: 'Reshape [2,3,4] -> [6,-1]',
    inputs: [{ name: 'x', dims: [2, 3, 4] }],
    build: ([x]) => op.reshape(x, [6, -1]),
  },
  {
    name: 'Transpose perm [2,0,1]',
    inputs: [{ name: 'x', dims: [2, 3, 4] }],
    build: ([x]) => op.transpose(x, [2, 0, 1]),
  },
  {
    name: 'Squeeze and Unsqueeze',
    inputs: [
      { name: 'x', dims: [2, 1, 3] },
      { name: 'y', dims: [2, 3] },
    ],
    build: ([x, y]) => [op.squeeze(x, 1), op.unsqueeze(y, [0, 2])],
  },
  {
    name: 'Expand [3,1] -> [2,3,4]',
    inputs: [{ name: 'x', dims: [3, 1] }],
    build: ([x]) => op.expand(x, [2, 3, 4]),
  },
  {
    name: 'Concat three inputs on axis 1',
    inputs: [
      { name: 'a', dims: [2, 1, 3] },
      { name: 'b', dims: [2, 2, 3] },
      { name: 'c', dims: [2, 3, 3] },
    ],
    build: ([a, b, c]) => op.concat([a, b, c], 1),
  },
  {
    name: 'Slice with negative starts and ends',
    inputs: [{ name: 'x', dims: [4, 5] }],
    build: ([x]) => op.slice(x, [1, -4], [-1, op.END], [0, 1]),
  },
  {
    name: 'Split by sizes, one output unused',
    inputs: [{ name: 'x', dims: [2, 6] }],
    build: ([x]) => {
      const [first, second] = op.split(x, [2, 4], 1);
      return [first, op.split(second, 2, 1)[1]];
    },
  },
  {
    name: 'Cast float64 -> float32 -> float64 around Tanh',
    dtype: 'float32',
    inputs: [{ name: 'x', dims: [3, 4] }],
    build: ([x]) => op.tanh(x),
  },
  // ---- named (dynamic) dims: runtime shapes feed the gradients
  {
    name: 'named dims: slices [1:], [:-1], [0:2], [-2:] of seq',
    inputs: [{ name: 'x', dims: [2, 5, 3], declared: [2, 'seq', 3] }],
    outputDims: [
      [2, 4, 3],
      [2, 2, 3],
      [2, 2, 3],
    ],
    build: ([x]) => [
      op.mul(op.slice(x, [1], [op.END], [1]), op.slice(x, [0], [-1], [1])),
      op.slice(x, [0], [2], [1]),
      op.slice(x, [-2], [op.END], [1]),
    ],
  },
  {
    name: 'named dims: ReduceMean over seq, Concat on seq, reshape-merged MatMul',
    inputs: [
      { name: 'x', dims: [2, 5, 3], declared: ['batch', 'seq', 3] },
      { name: 'w', dims: [3, 4] },
    ],
    outputDims: [
      [2, 3],
      [2, 10, 3],
      [2, 5, 4],
    ],
    build: ([x, w]) => [op.reduceMean(x, 1), op.concat([x, op.exp(x)], 1), op.matmul(x, w)],
  },
  // ---- composites (no rules of their own)
  {
    name: 'softplus and logSigmoid, including 0 and ±800',
    inputs: [{ name: 'x', dims: [8], values: [0, 0.3, -1.7, 4, 800, -800, 30, -30] }],
    build: ([x]) => [F.softplus(x), F.logSigmoid(x)],
  },
  unaryCase('silu', F.silu),
  unaryCase('geluTanh', F.geluTanh),
  { ...unaryCase('gelu exact (Erf: float32 kernel only)', F.gelu), dtype: 'float32' },
  {
    name: 'rmsNorm',
    inputs: [
      { name: 'x', dims: [2, 3, 4] },
      { name: 'weight', dims: [4] },
    ],
    build: ([x, weight]) => F.rmsNorm(x, weight),
  },
  {
    name: 'rotaryEmbedding [1,2,3,4]',
    inputs: [{ name: 'x', dims: [1, 2, 3, 4] }],
    build: ([x]) => F.rotaryEmbedding(x),
  },
  {
    name: 'tokenLogProbs',
    inputs: [{ name: 'logits', dims: [2, 3, 5] }],
    build: ([logits], graph) => F.tokenLogProbs(logits, int64(graph, [2, 3], [4, 0, 4, 2, 2, 1])),
  },
];

for (const { name, dtype = 'float64', ...spec } of cases) {
  test(`gradient of ${name} (${dtype})`, async (t) => {
    const result = await gradcheck({ ...spec, dtype });
    const tolerance = dtype === 'float64' ? FLOAT64_TOLERANCE : FLOAT32_TOLERANCE;
    t.diagnostic(
      `max relative error ${result.maxRelativeError.toExponential(2)} over ${result.evaluations} runs`,
    );
    assert.ok(
      result.maxRelativeError < tolerance,
      `relative errors [${result.relativeErrors.map((e) => e.toExponential(2)).join(', ')}] exceed ${tolerance}`,
    );
  });
}

test('every op with a gradient rule is exercised by some gradient check above', () => {
  const exercised = new Set(
    cases.flatMap(({ dtype = 'float64', ...spec }) => [...forwardOpTypes({ ...spec, dtype })]),
  );
  const unchecked = [...gradientRules.keys()].filter((opType) => !exercised.has(opType));
  assert.deepEqual(unchecked, []);
});
