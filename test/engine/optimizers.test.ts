// In-graph AdamW and SGD with clipping, checked in float64 against a plain TypeScript transcription of
// torch.optim.AdamW / torch.optim.SGD / clip_grad_norm_. Gradients for the reference come from a separate
// gradient-only graph, so what is checked is the update math, step after step.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import onnxProto from 'onnx-proto';
import { grad } from '../../engine/autodiff.ts';
import { type HostTensor, hostTensor } from '../../engine/dtype.ts';
import { Graph } from '../../engine/graph.ts';
import { serializeModel } from '../../engine/onnx.ts';
import * as op from '../../engine/ops/index.ts';
import type { OptimizerConfig } from '../../engine/optimizers.ts';
import type { ParameterSet } from '../../engine/parameters.ts';
import { compileTraining, type LossProgram, type TrainStepOptions } from '../../engine/train-step.ts';
import { TrainingSession } from '../../engine/training-session.ts';
import { normals, runGraph, seededRandom } from './gradcheck-helpers.ts';

const { onnx } = onnxProto;
const shapes = { w1: [3, 5], b1: [5], w2: [5, 2], b2: [2] } as const; // x (N, 3) → (N, 5) → (N, 2)
const local = { inWorker: false, intraOpThreads: 1 } as const;

/** Mean squared error of a 2-layer tanh MLP; N is dynamic so batches of any size share the model. */
function mlpLoss(graph: Graph): LossProgram {
  const x = graph.input('x', 'float64', ['N', 3]);
  const y = graph.input('y', 'float64', ['N', 2]);
  const p = Object.fromEntries(
    Object.entries(shapes).map(([name, dims]) => [name, graph.input(name, 'float64', [...dims])]),
  );
  const hidden = op.tanh(op.add(op.matmul(x, p.w1), p.b1));
  const out = op.add(op.matmul(hidden, p.w2), p.b2);
  const loss = op.reduceMean(op.pow(op.sub(out, y), 2));
  return { loss, metrics: { mean_output: op.reduceMean(out) }, trainable: Object.values(p) };
}

function initialParameters(seed: number): ParameterSet {
  const random = seededRandom(seed);
  return new Map(
    Object.entries(shapes).map(([name, dims]) => {
      const count = dims.reduce((a: number, b: number) => a * b, 1);
      return [
        name,
        hostTensor(
          'float64',
          [...dims],
          normals(random, count).map((v) => v * 0.7),
        ),
      ];
    }),
  );
}

function batch(seed: number, rows: number): Record<string, HostTensor> {
  const random = seededRandom(seed);
  return {
    x: hostTensor('float64', [rows, 3], normals(random, rows * 3)),
    y: hostTensor(
      'float64',
      [rows, 2],
      normals(random, rows * 2).map((v) => v * 3),
    ),
  };
}

/** d loss / d parameters from a gradient-only graph. */
async function gradients(
  parameters: ParameterSet,
  data: Record<string, HostTensor>,
): Promise<Map<string, Float64Array>> {
  const graph = new Graph('mlp_gradients');
  const program = mlpLoss(graph);
  for (const [i, g] of grad(program.loss, program.trainable).entries()) {
    graph.output(`grad:${program.trainable[i].name}`, g);
  }
  const [outputs] = await runGraph(serializeModel(graph), [{ ...data, ...Object.fromEntries(parameters) }]);
  return new Map(Object.keys(shapes).map((name) => [name, outputs[`grad:${name}`].data as Float64Array]));
}

/** torch.optim.AdamW / SGD step and clip_grad_norm_, transcribed. Returns the pre-clip norm. */
function referenceStep(
  parameters: Map<string, Float64Array>,
  state: Map<string, Float64Array[]>,
  grads: Map<string, Float64Array>,
  step: number,
  lr: number,
  options: TrainStepOptions,
): number {
  let total = 0;
  for (const g of grads.values()) for (const v of g) total += v * v;
  const norm = Math.sqrt(total);
  const coefficient = options.maxGradNorm > 0 ? Math.min(options.maxGradNorm / (norm + 1e-6), 1) : 1;
  const optimizer = options.optimizer;
  for (const [name, p] of parameters) {
    const g = grads.get(name)!.map((v) => v * coefficient);
    const decay = name.startsWith('w');
    if (optimizer.type === 'adamw') {
      const [m, v] = state.get(name)!;
      const c1 = 1 - optimizer.beta1 ** step;
      const c2 = Math.sqrt(1 - optimizer.beta2 ** step);
      for (let i = 0; i < p.length; i++) {
        if (decay) p[i] *= 1 - lr * optimizer.weightDecay;
        m[i] += (g[i] - m[i]) * (1 - optimizer.beta1);
        v[i] = v[i] * optimizer.beta2 + g[i] * g[i] * (1 - optimizer.beta2);
        p[i] -= (m[i] / (Math.sqrt(v[i]) / c2 + optimizer.epsilon)) * (lr / c1);
      }
    } else {
      const [buffer] = state.get(name)!;
      for (let i = 0; i < p.length; i++) {
        const gi = decay ? g[i] + optimizer.weightDecay * p[i] : g[i];
        buffer[i] = optimizer.momentum * buffer[i] + gi;
        p[i] -= lr * buffer[i];
      }
    }
  }
  return norm;
}

function maxRelativeError(actual: ParameterSet, expected: Map<string, Float64Array>): number {
  let worst = 0;
  for (const [name, reference] of expected) {
    const values = actual.get(name)!.data as Float64Array;
    const scale = Math.max(...reference.map(Math.abs));
    for (let i = 0; i < reference.length; i++)
      worst = Math.max(worst, Math.abs(values[i] - reference[i]) / scale);
  }
  return worst;
}

async function compareWithReference(options: TrainStepOptions, steps: number, learningRates: number[]) {
  const compiled = compileTraining(mlpLoss, options);
  const start = initialParameters(7);
  const session = await TrainingSession.create(compiled, { parameters: start }, local);
  const reference = new Map([...start].map(([name, t]) => [name, Float64Array.from(t.data as Float64Array)]));
  const stateCount = options.optimizer.type === 'adamw' ? 2 : 1;
  const state = new Map(
    [...start].map(([name, t]) => [
      name,
      Array.from({ length: stateCount }, () => new Float64Array(t.data.length)),
    ]),
  );
  const norms: { engine: number; reference: number }[] = [];
  for (let step = 1; step <= steps; step++) {
    const data = batch(100 + step, 8);
    const referenceParameters = new Map(
      [...reference].map(([name, p]) => [
        name,
        hostTensor('float64', [...shapes[name as keyof typeof shapes]], p),
      ]),
    );
    const grads = await gradients(referenceParameters, data);
    const lr = learningRates[(step - 1) % learningRates.length];
    const referenceNorm = referenceStep(reference, state, grads, step, lr, options);
    const result = await session.step(data, { learningRate: lr });
    norms.push({ engine: result.gradNorm!, reference: referenceNorm });
  }
  const error = maxRelativeError(session.parameters(), reference);
  await session.release();
  return { error, norms, compiled };
}

const adamw: OptimizerConfig = { type: 'adamw', beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1 };

describe('in-graph optimizers match PyTorch semantics (float64)', () => {
  it('5 AdamW steps with clipping active agree to < 1e-6 relative', async (t) => {
    const { error, norms } = await compareWithReference(
      { optimizer: adamw, maxGradNorm: 0.5, gradientAccumulationSteps: 1 },
      5,
      [0.05, 0.03],
    );
    assert.ok(
      norms.some(({ reference }) => reference > 0.5),
      'clipping must be active in some step',
    );
    for (const { engine, reference } of norms) assert.ok(Math.abs(engine - reference) <= 1e-9 * reference);
    t.diagnostic(
      `AdamW max relative error ${error.toExponential(2)}, pre-clip norms ${norms.map((n) => n.reference.toFixed(3))}`,
    );
    assert.ok(error < 1e-6, `max relative error ${error}`);
  });

  it('5 SGD-with-momentum steps agree to < 1e-6 relative', async (t) => {
    const { error } = await compareWithReference(
      {
        optimizer: { type: 'sgd', momentum: 0.9, weightDecay: 0.01 },
        maxGradNorm: 1,
        gradientAccumulationSteps: 1,
      },
      5,
      [0.02],
    );
    t.diagnostic(`SGD max relative error ${error.toExponential(2)}`);
    assert.ok(error < 1e-6, `max relative error ${error}`);
  });

  it('max_grad_norm 0 builds no clipping and updates with the raw gradient', async () => {
    const { error, compiled } = await compareWithReference(
      { optimizer: adamw, maxGradNorm: 0, gradientAccumulationSteps: 1 },
      3,
      [0.05],
    );
    assert.ok(error < 1e-6, `max relative error ${error}`);
    const opTypes = new Set(onnx.ModelProto.decode(compiled.update).graph!.node!.map((node) => node.opType));
    assert.equal(opTypes.has('Less'), false, `clipping nodes present: ${[...opTypes]}`);
    assert.equal(opTypes.has('Where'), false);
  });

  it('learning rate is a graph input: 0 leaves the weights exactly as they were', async () => {
    const compiled = compileTraining(mlpLoss, {
      optimizer: adamw,
      maxGradNorm: 1,
      gradientAccumulationSteps: 1,
    });
    const start = initialParameters(3);
    const session = await TrainingSession.create(compiled, { parameters: start }, local);
    await session.step(batch(1, 8), { learningRate: 0 });
    for (const [name, tensor] of session.parameters()) assert.deepEqual(tensor.data, start.get(name)!.data);
    assert.equal(session.completedSteps, 1);
    await session.release();
  });

  it('2 accumulated micro-batches of 4 make the same update as one batch of 8', async () => {
    const options = { optimizer: adamw, maxGradNorm: 0.5 };
    const whole = compileTraining(mlpLoss, { ...options, gradientAccumulationSteps: 1 });
    const accumulated = compileTraining(mlpLoss, { ...options, gradientAccumulationSteps: 2 });
    assert.ok(accumulated.accumulate, 'an accumulate model is compiled');
    const start = initialParameters(11);
    const one = await TrainingSession.create(whole, { parameters: start }, local);
    const two = await TrainingSession.create(accumulated, { parameters: start }, local);
    for (let step = 0; step < 3; step++) {
      const data = batch(200 + step, 8);
      const halves = [0, 4].map((row) => ({
        x: hostTensor('float64', [4, 3], (data.x.data as Float64Array).slice(row * 3, row * 3 + 12)),
        y: hostTensor('float64', [4, 2], (data.y.data as Float64Array).slice(row * 2, row * 2 + 8)),
      }));
      const full = await one.step(data, { learningRate: 0.05 });
      const first = await two.microStep(halves[0], { learningRate: 0.05 });
      const second = await two.microStep(halves[1], { learningRate: 0.05 });
      assert.equal(first.applied, false);
      assert.equal(second.applied, true);
      assert.ok(Math.abs(second.gradNorm! - full.gradNorm!) < 1e-12 * full.gradNorm!);
      assert.ok(Math.abs((first.loss + second.loss) / 2 - full.loss) < 1e-12 * full.loss);
    }
    const expected = new Map([...one.parameters()].map(([name, t]) => [name, t.data as Float64Array]));
    assert.ok(maxRelativeError(two.parameters(), expected) < 1e-12);
    assert.equal(two.completedSteps, 3);
    await one.release();
    await two.release();
  });
});
