// The engine trains: a tiny MLP classifier and a 2-layer character transformer learn through the compiled
// train step in the runtime's worker thread; the same seed gives bit-identical weights, and a run resumed
// from state() continues bit-identically. Legend: B batch, T tokens, D width, H heads, E head width, V vocab.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type HostTensor, hostTensor } from '../../engine/dtype.ts';
import * as F from '../../engine/functional.ts';
import type { Graph, Tensor } from '../../engine/graph.ts';
import * as op from '../../engine/ops/index.ts';
import { maxAbsDiff, type ParameterSet } from '../../engine/parameters.ts';
import { compileTraining, type LossProgram } from '../../engine/train-step.ts';
import { type MicroStepResult, TrainingSession } from '../../engine/training-session.ts';
import { normals, seededRandom } from './gradcheck-helpers.ts';

const adamw = { type: 'adamw', beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01 } as const;

function randomParameters(
  shapes: Record<string, number[]>,
  seed: number,
  std: (name: string) => number,
): ParameterSet {
  const random = seededRandom(seed);
  return new Map(
    Object.entries(shapes).map(([name, dims]) => {
      const count = dims.reduce((a, b) => a * b, 1);
      const values = name.endsWith('ln.weight')
        ? new Float64Array(count).fill(1)
        : normals(random, count).map((v) => v * std(name));
      return [name, hostTensor('float32', dims, Float32Array.from(values))];
    }),
  );
}

const inputs = (graph: Graph, shapes: Record<string, number[]>) =>
  Object.fromEntries(
    Object.entries(shapes).map(([name, dims]) => [name, graph.input(name, 'float32', dims)]),
  );

describe('training through the compiled step', () => {
  it('an MLP classifier separates four XOR-arranged blobs: loss < 0.05, accuracy 1.0', async (t) => {
    const shapes = { w1: [2, 16], b1: [16], w2: [16, 2], b2: [2] };
    const build = (graph: Graph): LossProgram => {
      const x = graph.input('x', 'float32', ['B', 2]);
      const label = graph.input('label', 'int64', ['B']);
      const p = inputs(graph, shapes);
      const logits = op.add(op.matmul(op.tanh(op.add(op.matmul(x, p.w1), p.b1)), p.w2), p.b2); // (B, 2)
      const logp = F.tokenLogProbs(logits, label); // (B,)
      const predicted = op.cast(
        op.greater(op.slice(logits, [1], [2], [1]), op.slice(logits, [0], [1], [1])),
        'int64',
      );
      const correct = op.cast(op.equal(op.squeeze(predicted, 1), label), 'float32');
      return {
        loss: op.neg(op.reduceMean(logp)),
        metrics: { accuracy: op.reduceMean(correct) },
        trainable: Object.values(p),
      };
    };
    const random = seededRandom(5);
    const count = 64;
    const centers = [
      [-1, -1, 0],
      [1, 1, 0],
      [-1, 1, 1],
      [1, -1, 1],
    ]; // (x, y, class): XOR
    const x = new Float32Array(count * 2);
    const label = new BigInt64Array(count);
    for (let i = 0; i < count; i++) {
      const [cx, cy, cls] = centers[i % 4];
      const [nx, ny] = normals(random, 2);
      x[2 * i] = cx + 0.2 * nx;
      x[2 * i + 1] = cy + 0.2 * ny;
      label[i] = BigInt(cls);
    }
    // Each update accumulates two micro-batches of 32, so the worker runs the accumulate model too.
    const compiled = compileTraining(build, {
      optimizer: adamw,
      maxGradNorm: 1,
      gradientAccumulationSteps: 2,
    });
    const halves = [0, count / 2].map((row) => ({
      x: hostTensor('float32', [count / 2, 2], x.slice(row * 2, (row + count / 2) * 2)),
      label: hostTensor('int64', [count / 2], label.slice(row, row + count / 2)),
    }));
    const session = await TrainingSession.create(compiled, {
      parameters: randomParameters(shapes, 1, () => 0.5),
    });
    const update = async () => {
      const results: MicroStepResult[] = [];
      for (const half of halves) results.push(await session.microStep(half, { learningRate: 0.05 }));
      assert.deepEqual(
        results.map((result) => result.applied),
        [false, true],
      );
      const [a, b] = results;
      return { loss: (a.loss + b.loss) / 2, accuracy: (a.metrics.accuracy + b.metrics.accuracy) / 2 };
    };
    const first = await update();
    let last = first;
    for (let step = 1; step < 150; step++) last = await update();
    await session.release();
    t.diagnostic(`loss ${first.loss.toFixed(3)} → ${last.loss.toFixed(4)}, accuracy ${last.accuracy}`);
    assert.ok(first.loss > 0.5, `starts untrained (${first.loss})`);
    assert.ok(last.loss < 0.05, `final loss ${last.loss}`);
    assert.equal(last.accuracy, 1);
  });

  describe('a 2-layer character transformer', () => {
    const text = 'the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs. ';
    const vocabulary = [...new Set(text)].sort();
    const V = vocabulary.length;
    const [T, D, H, L] = [32, 32, 2, 2];
    const E = D / H;
    const shapes: Record<string, number[]> = {
      wte: [V, D],
      wpe: [T, D],
      'ln_f.ln.weight': [D],
      'ln_f.bias': [D],
    };
    for (let layer = 0; layer < L; layer++) {
      Object.assign(shapes, {
        [`h${layer}.ln_1.ln.weight`]: [D],
        [`h${layer}.ln_1.bias`]: [D],
        [`h${layer}.c_attn.weight`]: [D, 3 * D],
        [`h${layer}.c_attn.bias`]: [3 * D],
        [`h${layer}.c_proj.weight`]: [D, D],
        [`h${layer}.c_proj.bias`]: [D],
        [`h${layer}.ln_2.ln.weight`]: [D],
        [`h${layer}.ln_2.bias`]: [D],
        [`h${layer}.c_fc.weight`]: [D, 4 * D],
        [`h${layer}.c_fc.bias`]: [4 * D],
        [`h${layer}.mlp_proj.weight`]: [4 * D, D],
        [`h${layer}.mlp_proj.bias`]: [D],
      });
    }

    const build = (graph: Graph): LossProgram => {
      const tokens = graph.input('tokens', 'int64', ['B', T + 1]); // (B, T+1): inputs then shifted targets
      const p = inputs(graph, shapes);
      const input = op.slice(tokens, [0], [T], [1]); // (B, T)
      const target = op.slice(tokens, [1], [op.END], [1]); // (B, T)
      let x = op.add(op.gather(p.wte, input), op.gather(p.wpe, op.arange(input, 1))); // (B, T, D)
      const heads = (t: Tensor) => op.transpose(op.reshape(t, ['B', T, H, E]), [0, 2, 1, 3]); // (B, H, T, E)
      for (let layer = 0; layer < L; layer++) {
        const w = (name: string) => p[`h${layer}.${name}`];
        const h = op.layerNorm(x, w('ln_1.ln.weight'), w('ln_1.bias'));
        const [q, k, v] = op
          .split(op.add(op.matmul(h, w('c_attn.weight')), w('c_attn.bias')), 3, -1)
          .map(heads);
        const scores = op.div(op.matmul(q, op.transposeLastTwo(k)), Math.sqrt(E)); // (B, H, T, T)
        const attention = op.softmax(F.maskScores(scores, F.causalMask(scores, -1)));
        const y = op.reshape(op.transpose(op.matmul(attention, v), [0, 2, 1, 3]), ['B', T, D]); // (B, T, D)
        x = op.add(x, op.add(op.matmul(y, w('c_proj.weight')), w('c_proj.bias')));
        const m = F.geluTanh(
          op.add(
            op.matmul(op.layerNorm(x, w('ln_2.ln.weight'), w('ln_2.bias')), w('c_fc.weight')),
            w('c_fc.bias'),
          ),
        );
        x = op.add(x, op.add(op.matmul(m, w('mlp_proj.weight')), w('mlp_proj.bias')));
      }
      const logits = op.matmul(op.layerNorm(x, p['ln_f.ln.weight'], p['ln_f.bias']), op.transpose(p.wte)); // (B, T, V), tied
      return { loss: op.neg(op.reduceMean(F.tokenLogProbs(logits, target))), trainable: Object.values(p) };
    };

    /** B windows of T+1 characters at seeded offsets. */
    function batch(step: number, rows = 16): Record<string, HostTensor> {
      const random = seededRandom(1000 + step);
      const ids = new BigInt64Array(rows * (T + 1));
      for (let row = 0; row < rows; row++) {
        const start = Math.floor(random() * text.length);
        for (let t = 0; t <= T; t++)
          ids[row * (T + 1) + t] = BigInt(vocabulary.indexOf(text[(start + t) % text.length]));
      }
      return { tokens: hostTensor('int64', [rows, T + 1], ids) };
    }

    const compiled = compileTraining(build, {
      optimizer: adamw,
      maxGradNorm: 1,
      gradientAccumulationSteps: 1,
    });
    const start = () => randomParameters(shapes, 2, (name) => (name.endsWith('bias') ? 0 : 0.08));
    const learningRate = 1e-2;

    async function train(session: TrainingSession, from: number, to: number): Promise<number[]> {
      const losses: number[] = [];
      for (let step = from; step < to; step++)
        losses.push((await session.step(batch(step), { learningRate })).loss);
      return losses;
    }

    it('learns next-character prediction: mean cross-entropy falls from ~ln V to below 0.5 nats', async (t) => {
      const session = await TrainingSession.create(compiled, { parameters: start() });
      const losses = await train(session, 0, 250);
      await session.release();
      t.diagnostic(
        `loss ${losses[0].toFixed(3)} → ${losses.at(-1)!.toFixed(3)} (ln V = ${Math.log(V).toFixed(3)})`,
      );
      assert.ok(Math.abs(losses[0] - Math.log(V)) < 0.5, `initial loss ${losses[0]} near ln ${V}`);
      const tail = losses.slice(-10).reduce((a, b) => a + b) / 10;
      assert.ok(tail < 0.5, `mean of the last 10 losses ${tail}`);
    });

    it('is bit-reproducible, and a run resumed via state() / loadState() ends bit-identical to an uninterrupted one', async () => {
      const uninterrupted = await TrainingSession.create(compiled, { parameters: start() });
      const twin = await TrainingSession.create(compiled, { parameters: start() });
      const lossesA = await train(uninterrupted, 0, 12);
      const lossesB = await train(twin, 0, 12);
      assert.deepEqual(lossesA, lossesB);
      assert.equal(maxAbsDiff(uninterrupted.parameters(), twin.parameters()), 0);

      const interrupted = await TrainingSession.create(compiled, { parameters: start() });
      await train(interrupted, 0, 5);
      const saved = interrupted.state();
      await interrupted.release();
      // A fresh session from other weights, then the checkpoint loaded into it.
      const resumed = await TrainingSession.create(compiled, {
        parameters: randomParameters(shapes, 9, () => 1),
      });
      resumed.loadState(saved);
      assert.equal(resumed.completedSteps, 5);
      const resumedLosses = await train(resumed, 5, 12);
      assert.deepEqual(resumedLosses, lossesA.slice(5));
      const finalA = uninterrupted.state();
      const finalB = resumed.state();
      for (const [name, tensor] of [...finalA.parameters, ...finalA.optimizerState]) {
        const other = finalB.parameters.get(name) ?? finalB.optimizerState.get(name)!;
        assert.deepEqual(
          Buffer.from(other.data.buffer, other.data.byteOffset, other.data.byteLength),
          Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength),
          name,
        );
      }
      await Promise.all([uninterrupted.release(), twin.release(), resumed.release()]);
    });
  });
});
