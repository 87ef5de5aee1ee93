// Test support for the engine: run a model through engine/runtime.ts, seeded random data, and a gradient
// check of autodiff against central finite differences of the same ONNX forward pass.

import { grad } from '../../engine/autodiff.ts';
import { type HostTensor, hostTensor } from '../../engine/dtype.ts';
import { type Dim, Graph, type Tensor } from '../../engine/graph.ts';
import { serializeModel } from '../../engine/onnx.ts';
import * as op from '../../engine/ops/index.ts';
import { mulberry32, standardNormal } from '../../engine/random.ts';
import { createSession } from '../../engine/runtime.ts';

export type Feeds = Record<string, HostTensor>;

/** Runs a model once per feed set in one CPU session; `fetches` defaults to every output. */
export async function runGraph(
  model: Uint8Array | string,
  feedSets: readonly Feeds[],
  fetches?: readonly string[],
): Promise<Record<string, HostTensor>[]> {
  const session = await createSession(model, {
    executionProvider: 'cpu',
    inWorker: false,
    intraOpThreads: 1,
  });
  try {
    const results: Record<string, HostTensor>[] = [];
    for (const feeds of feedSets) results.push(await session.run(feeds, fetches));
    return results;
  } finally {
    await session.release();
  }
}

/** Every test draws the same numbers on every machine. */
export const seededRandom = mulberry32;

/** Standard normal samples (Box–Muller). */
export function normals(random: () => number, count: number): Float64Array {
  return Float64Array.from({ length: count }, standardNormal(random));
}

/** How an input's values are drawn: standard normal, uniform in [0.5, 2] (for log, sqrt, 1/x), or given. */
export type ValueDraw = 'normal' | 'positive' | readonly number[];

export interface GradcheckInput {
  name: string;
  /** Runtime dims of the fed values. */
  dims: readonly number[];
  /** Dims declared in the graph when some are named (dynamic); defaults to `dims`. */
  declared?: readonly Dim[];
  values?: ValueDraw;
}

/** A non-differentiable input (masks, token ids), fed as given. */
export interface FixedInput {
  name: string;
  declared: readonly Dim[];
  value: HostTensor;
}

export interface GradcheckSpec {
  inputs: readonly GradcheckInput[];
  fixedInputs?: readonly FixedInput[];
  /** Builds the function under test from the inputs (already cast to `dtype`) and the fixed inputs. */
  build: (inputs: Tensor[], graph: Graph, fixed: Tensor[]) => Tensor | Tensor[];
  /** dtype the function runs in; float64 inputs are cast to it and its outputs cast back. */
  dtype: 'float64' | 'float32';
  /** Runtime dims of each output, needed only when outputs have named dims. */
  outputDims?: readonly (readonly number[])[];
  seed?: number;
  /** Finite-difference step; defaults to 1e-6 in float64 and 1e-3 in float32. */
  step?: number;
}

export interface GradcheckResult {
  /** Per input: max |analytic − numeric| / max |numeric| over its elements. */
  relativeErrors: number[];
  maxRelativeError: number;
  /** Forward runs spent on finite differences. */
  evaluations: number;
}

/**
 * Checks grad() of loss = Σ_k sum(f_k(inputs) ⊙ W_k), W_k random, against central differences
 * (L(x + h·e_j) − L(x − h·e_j)) / 2h for every element j of every input. The loss and the analytic
 * gradients come from one model; all perturbed runs share one session.
 */
export async function gradcheck(spec: GradcheckSpec): Promise<GradcheckResult> {
  const random = seededRandom(spec.seed ?? 1234);
  const values = spec.inputs.map((input) => drawValues(random, input));
  const graph = new Graph('gradcheck');
  const weightFeeds: Feeds = {};
  const { inputs, outputs } = buildFunction(graph, spec);
  const terms = outputs.map((output, k) => {
    const dims = spec.outputDims?.[k] ?? output.dims.map(Number);
    const weights = hostTensor(
      'float64',
      dims,
      normals(
        random,
        dims.reduce((a, b) => a * b, 1),
      ),
    );
    // Weights of a named-dims output are fed as an input declared with those dims.
    const weightTensor = dims.every((dim, i) => dim === output.dims[i])
      ? graph.constant(weights)
      : graph.input(`weights_${k}`, 'float64', output.dims);
    if (weightTensor.source.kind === 'input') weightFeeds[weightTensor.name] = weights;
    return op.reduceSum(op.mul(op.cast(output, 'float64'), weightTensor));
  });
  const loss = terms.reduce((total, term) => op.add(total, term));
  graph.output('loss', loss);
  for (const [i, gradient] of grad(loss, inputs).entries())
    graph.output(`grad_${spec.inputs[i].name}`, gradient);

  const model = serializeModel(graph);
  const base: Feeds = {
    ...weightFeeds,
    ...Object.fromEntries((spec.fixedInputs ?? []).map((input) => [input.name, input.value])),
    ...Object.fromEntries(
      spec.inputs.map((input, i) => [input.name, hostTensor('float64', input.dims, values[i])]),
    ),
  };
  const [analytic] = await runGraph(model, [base]);

  const step = spec.step ?? (spec.dtype === 'float64' ? 1e-6 : 1e-3);
  const perturbed: Feeds[] = [];
  spec.inputs.forEach((input, i) => {
    for (let j = 0; j < values[i].length; j++) {
      for (const sign of [1, -1]) {
        const shifted = Float64Array.from(values[i]);
        shifted[j] += sign * step;
        perturbed.push({ ...base, [input.name]: hostTensor('float64', input.dims, shifted) });
      }
    }
  });
  const losses = (await runGraph(model, perturbed, ['loss'])).map((result) => Number(result.loss.data[0]));

  let at = 0;
  const relativeErrors = spec.inputs.map((input) => {
    const gradient = analytic[`grad_${input.name}`].data as Float64Array;
    let maxDifference = 0;
    let maxNumeric = 0;
    for (let j = 0; j < gradient.length; j++, at += 2) {
      const numeric = (losses[at] - losses[at + 1]) / (2 * step);
      maxDifference = Math.max(maxDifference, Math.abs(gradient[j] - numeric));
      maxNumeric = Math.max(maxNumeric, Math.abs(numeric));
    }
    return maxDifference / Math.max(maxNumeric, 1e-12);
  });
  return { relativeErrors, maxRelativeError: Math.max(...relativeErrors), evaluations: perturbed.length };
}

/** Declares the spec's inputs in `graph` and builds the function under test on them. */
function buildFunction(graph: Graph, spec: GradcheckSpec): { inputs: Tensor[]; outputs: Tensor[] } {
  const inputs = spec.inputs.map((input) => graph.input(input.name, 'float64', input.declared ?? input.dims));
  const fixed = (spec.fixedInputs ?? []).map((input) =>
    graph.input(input.name, input.value.dtype, input.declared),
  );
  const cast = inputs.map((input) => op.cast(input, spec.dtype));
  const built = spec.build(cast, graph, fixed);
  return { inputs, outputs: Array.isArray(built) ? built : [built] };
}

/** The op types the function under test is made of (what its gradient check exercises). */
export function forwardOpTypes(spec: GradcheckSpec): Set<string> {
  const graph = new Graph('ops');
  buildFunction(graph, spec);
  return new Set(graph.nodes.map((node) => node.opType));
}

function drawValues(random: () => number, input: GradcheckInput): Float64Array {
  const count = input.dims.reduce((a, b) => a * b, 1);
  if (input.values === 'positive') return Float64Array.from({ length: count }, () => 0.5 + 1.5 * random());
  if (input.values === undefined || input.values === 'normal') return normals(random, count);
  if (input.values.length !== count)
    throw new RangeError(`input ${input.name}: ${input.values.length} values for ${count}`);
  return Float64Array.from(input.values);
}
