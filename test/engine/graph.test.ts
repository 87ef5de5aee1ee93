// The graph builder and autodiff's contracts: precise build-time shape errors, loud missing gradients,
// pruning of unused branches, lean fan-out, stopGradient, output naming, and ONNX external data.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { grad } from '../../engine/autodiff.ts';
import { hostTensor } from '../../engine/dtype.ts';
import { Graph } from '../../engine/graph.ts';
import { saveModel, serializeModel } from '../../engine/onnx.ts';
import * as op from '../../engine/ops/index.ts';
import { normals, runGraph, seededRandom } from './gradcheck-helpers.ts';

/** Node op types appended while `build` runs. */
function addedOps(graph: Graph, build: () => void): string[] {
  const before = graph.nodes.length;
  build();
  return graph.nodes.slice(before).map((node) => node.opType);
}

test('MatMul names both shapes and the inner dims when they disagree', () => {
  const graph = new Graph();
  const a = graph.input('a', 'float32', ['batch', 64, 32]);
  const b = graph.input('b', 'float32', [16, 8]);
  assert.throws(() => op.matmul(a, b), {
    name: 'ShapeError',
    message: 'MatMul: cannot multiply [batch, 64, 32] by [16, 8]: inner dims 32 vs 16',
  });
  const c = graph.input('c', 'float32', [3, 32, 8]);
  assert.throws(
    () => op.matmul(a, c),
    /MatMul: batch dims of \[batch, 64, 32\] by \[3, 32, 8\]: cannot broadcast/,
  );
  assert.deepEqual(op.matmul(a, graph.input('d', 'float32', [32, 8])).dims, ['batch', 64, 8]);
});

test('broadcasting follows numpy, and named dims broadcast only with themselves or 1', () => {
  const graph = new Graph();
  const seq = graph.input('seq', 'float32', ['seq', 4]);
  assert.deepEqual(
    op.add(graph.input('a', 'float32', [3, 1, 4]), graph.input('b', 'float32', [5, 4])).dims,
    [3, 5, 4],
  );
  assert.deepEqual(op.add(seq, graph.input('one', 'float32', [1, 4])).dims, ['seq', 4]);
  assert.deepEqual(op.add(seq, graph.input('same', 'float32', ['seq', 1])).dims, ['seq', 4]);
  assert.throws(() => op.add(seq, graph.input('static', 'float32', [5, 4])), {
    message: 'Add: cannot broadcast [seq, 4] and [5, 4]: dim seq vs 5 at axis 0',
  });
  assert.throws(() => op.mul(seq, graph.input('other', 'float32', ['batch', 4])), {
    message: 'Mul: cannot broadcast [seq, 4] and [batch, 4]: dim seq vs batch at axis 0',
  });
  assert.throws(() => op.add(seq, graph.input('double', 'float64', ['seq', 4])), {
    message: 'Add: dtype mismatch float32 vs float64',
  });
});

test('shape ops check their arguments and track named dims', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', ['batch', 'seq', 64]);
  assert.deepEqual(op.reshape(x, ['batch', 'seq', 4, 16]).dims, ['batch', 'seq', 4, 16]);
  assert.deepEqual(op.reshape(x, [-1, 64]).dims, ['batch*seq', 64]);
  assert.throws(() => op.reshape(x, ['batch', 'seq', 5, 16]), {
    message: 'Reshape: cannot reshape [batch, seq, 64] (64*batch*seq elements) to [batch, seq, 5, 16]',
  });
  assert.throws(() => op.squeeze(x, 1), { message: 'Squeeze: axis 1 of [batch, seq, 64] is not 1' });
  assert.throws(() => op.concat([x, graph.input('y', 'float32', ['batch', 'seq', 32])], 1), {
    message: 'Concat: shapes [batch, seq, 64], [batch, seq, 32] differ off axis 1',
  });
  assert.deepEqual(op.concat([x, x], 1).dims, ['batch', '2*seq', 64]);
  // Shifted-by-one views of a sequence agree, so logits[:, :-1] lines up with labels[:, 1:].
  const shifted = op.slice(x, [0], [-1], [1]);
  assert.deepEqual(shifted.dims, ['batch', 'seq-1', 64]);
  assert.deepEqual(op.add(shifted, op.slice(x, [1], [op.END], [1])).dims, ['batch', 'seq-1', 64]);
  assert.throws(() => op.transpose(x, [0, 0, 1]), /Transpose: perm \[0, 0, 1\] is not a permutation/);
  assert.deepEqual(
    addedOps(graph, () => assert.equal(op.transposeLastTwo(op.transposeLastTwo(x)), x)),
    ['Transpose'],
    'a transpose of a transpose goes back to the original',
  );
  assert.equal(op.cast(x, 'float32'), x, 'a cast to the same dtype is no node');
  const other = new Graph('other').input('z', 'float32', ['batch', 'seq', 64]);
  assert.throws(() => op.add(x, other), { message: 'Add: operands come from different graphs' });
});

test('a node without a gradient rule fails loudly, naming the op and the node', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [4]);
  const scattered = op.scatterElements(
    op.zerosLike(x),
    graph.int64s([3, 1]),
    op.slice(x, [0], [2]),
    0,
    'add',
  );
  const node = scattered.producer!;
  const loss = op.reduceSum(scattered);
  assert.throws(() => grad(loss, [x]), { message: `no gradient for ScatterElements (node ${node.name})` });
});

test('grad builds nothing for branches that do not reach both the loss and wrt', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [3, 4]);
  const y = graph.input('y', 'float32', [3, 4]);
  const frozen = graph.initializer('w', hostTensor('float32', [4, 2], new Float32Array(8)), { frozen: true });
  op.mul(x, 3); // unused by the loss
  const loss = op.reduceSum(op.add(op.add(op.exp(x), op.sin(y)), op.reduceSum(op.matmul(y, frozen))));
  const ops = addedOps(graph, () => grad(loss, [x]));
  // ReduceSum → Expand of the seed; the Adds pass it through; Exp → Mul. No Cos (sin's branch), no MatMul.
  assert.deepEqual(ops, ['Expand', 'Mul']);
  const weightOps = addedOps(graph, () => grad(loss, [y]));
  assert.equal(weightOps.filter((o) => o === 'MatMul').length, 1, 'only dL/dy = g @ wᵀ, never dL/dw');
  assert.throws(() => grad(loss, [frozen]), /grad: w float32 \[4, 2\] \(initializer\) carries no gradient/);
});

test('fan-out accumulates with one Add for two uses and one Sum for more', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float64', [3]);
  const usedTwice = op.reduceSum(op.mul(op.exp(x), op.sin(x)));
  const twice = addedOps(graph, () => grad(usedTwice, [x]));
  assert.equal(twice.filter((o) => o === 'Add').length, 1);
  assert.ok(!twice.includes('Sum'));
  const usedThrice = op.reduceSum(op.add(op.add(op.exp(x), op.sin(x)), op.cos(x)));
  const thrice = addedOps(graph, () => grad(usedThrice, [x]));
  assert.equal(thrice.filter((o) => o === 'Sum').length, 1);
  assert.ok(!thrice.includes('Add'), thrice.join());
});

test('stopGradient is the same value but a constant to autodiff, and costs no node', async () => {
  const graph = new Graph();
  const x = graph.input('x', 'float64', [4]);
  const nodes = graph.nodes.length;
  const stopped = op.stopGradient(x);
  assert.equal(graph.nodes.length, nodes);
  const loss = op.reduceSum(op.mul(x, stopped)); // d/dx = stopped value x, not 2x
  graph.output('loss', loss);
  graph.output('dx', grad(loss, [x])[0]);
  const values = new Float64Array([1, -2, 3, 0.5]);
  const [result] = await runGraph(serializeModel(graph), [{ x: hostTensor('float64', [4], values) }]);
  assert.deepEqual(Array.from(result.dx.data as Float64Array), Array.from(values));
  assert.equal(result.loss.data[0], 1 + 4 + 9 + 0.25);
});

test('grad argument checks: non-scalar loss needs a seed; unused wrt fails unless allowUnused', () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [2]);
  const y = graph.input('y', 'float32', [2]);
  assert.throws(
    () => grad(op.exp(x), [x]),
    /loss .* is not a scalar; reduce it or pass a seed of dims \[2\]/,
  );
  const loss = op.reduceSum(op.exp(x));
  assert.throws(() => grad(loss, [y]), /the loss does not depend on y float32 \[2\]/);
  const [zeros] = grad(loss, [y], { allowUnused: true });
  assert.equal(zeros.producer?.opType, 'ConstantOfShape');
});

test('outputs: node outputs are renamed in place, inputs go through Identity; constants are shared', async () => {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [2]);
  assert.equal(graph.scalar(2, 'float32'), graph.scalar(2, 'float32'));
  const doubled = op.mul(x, 2);
  op.exp(x); // not needed by any output: dropped when serializing
  graph.output('doubled', doubled);
  graph.output('echo', x);
  assert.equal(doubled.name, 'doubled');
  assert.throws(() => graph.output('doubled', x), /output 'doubled' is declared twice/);
  assert.throws(() => graph.input('x', 'float32', [1]), /name 'x' is already used/);
  const model = serializeModel(graph);
  const [result] = await runGraph(model, [{ x: hostTensor('float32', [2], new Float32Array([1.5, -3])) }]);
  assert.deepEqual(Array.from(result.doubled.data as Float32Array), [3, -6]);
  assert.deepEqual(Array.from(result.echo.data as Float32Array), [1.5, -3]);
  assert.deepEqual(
    graph.nodes.map((node) => node.opType),
    ['Mul', 'Exp', 'Identity'],
  );
  assert.ok(!new TextDecoder('latin1').decode(model).includes('Exp'), 'unused Exp is pruned from the model');
});

test('external data: large initializers go to a side file that ONNX Runtime loads back', async () => {
  const random = seededRandom(7);
  const build = (): Graph => {
    const graph = new Graph('external');
    const x = graph.input('x', 'float32', ['batch', 64]);
    const weight = graph.initializer(
      'weight',
      hostTensor('float32', [64, 64], Float32Array.from(normals(random, 4096))),
    );
    const bias = graph.initializer(
      'bias',
      hostTensor('float32', [64], Float32Array.from(normals(random, 64))),
    );
    graph.output('y', op.add(op.matmul(x, weight), bias));
    return graph;
  };
  const graph = build();
  const folder = await mkdtemp(join(tmpdir(), 'dpoflow-onnx-'));
  try {
    const modelPath = join(folder, 'model.onnx');
    const saved = await saveModel(graph, modelPath, {
      externalData: { fileName: 'model.data', thresholdBytes: 1024 },
    });
    assert.equal(saved.externalTensorCount, 1, 'only the 16 KiB weight passes the 1 KiB threshold');
    assert.equal((await stat(join(folder, 'model.data'))).size, 64 * 64 * 4);
    assert.ok((await stat(modelPath)).size < 2048, 'the model keeps only the weight location');
    assert.ok((await readFile(modelPath)).includes('model.data'));

    const feeds = [{ x: hostTensor('float32', [3, 64], Float32Array.from(normals(random, 192))) }];
    const [fromFile] = await runGraph(modelPath, feeds);
    const [inMemory] = await runGraph(serializeModel(graph), feeds);
    assert.deepEqual(fromFile.y.dims, [3, 64]);
    assert.deepEqual(
      Array.from(fromFile.y.data as Float32Array),
      Array.from(inMemory.y.data as Float32Array),
    );
    await assert.rejects(
      saveModel(graph, modelPath, { externalData: { fileName: '../x.data' } }),
      /bare file name/,
    );
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});
