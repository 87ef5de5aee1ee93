// Compiles a loss into training models: forward + backward + clipping + optimizer update in ONE ONNX graph.
// Trainable parameters are graph inputs (fed and returned each step); frozen weights are initializers and
// stay inside the session. With gradient accumulation a second model adds micro-batch gradients into
// accumulators, and the update model folds in the last micro-batch and applies the step in the same run.

import { grad } from './autodiff.ts';
import { type DType, isFloat } from './dtype.ts';
import { Graph, type Tensor } from './graph.ts';
import { serializeModel } from './onnx.ts';
import * as op from './ops/index.ts';
import {
  clipByGlobalNorm,
  createOptimizer,
  globalNorm,
  type OptimizerConfig,
  stateSuffixes,
} from './optimizers.ts';

/** What a loss builder returns: the scalar loss, metrics to report, and the parameters to train. */
export interface LossProgram {
  loss: Tensor;
  /** Scalars (or small tensors) returned with every step, e.g. TRL's rewards/chosen. */
  metrics?: Record<string, Tensor>;
  /** Graph inputs holding trainable weights; their names are the parameter names. */
  trainable: readonly Tensor[];
}

export interface TrainStepOptions {
  optimizer: OptimizerConfig;
  /** Global-norm clipping threshold; 0 disables clipping (no clipping nodes are built). */
  maxGradNorm: number;
  /** Micro-batches per update; the loss is a mean per micro-batch, so gradients are averaged. */
  gradientAccumulationSteps: number;
  /** Whether weight decay applies to a parameter; default `defaultDecays`. */
  decays?: (name: string, dims: readonly number[]) => boolean;
}

/**
 * Matrices decay, vectors don't: biases and norm weights are excluded, which is what the HF Trainer's
 * default (no decay for `bias` and LayerNorm/RMSNorm weights) selects in transformer checkpoints.
 */
export function defaultDecays(_name: string, dims: readonly number[]): boolean {
  return dims.length >= 2;
}

export interface TrainableParameter {
  name: string;
  dims: readonly number[];
  dtype: DType;
}

export interface CompiledTraining {
  /** Forward + backward (+ accumulated gradients) + clip + update. */
  update: Uint8Array;
  /** Forward + backward into gradient accumulators; only when gradientAccumulationSteps > 1. */
  accumulate?: Uint8Array;
  parameters: readonly TrainableParameter[];
  /** Per-parameter optimizer state suffixes, e.g. ['exp_avg', 'exp_avg_sq']. */
  stateSuffixes: readonly string[];
  metricNames: readonly string[];
  options: TrainStepOptions;
}

/** Value names shared by the compiled models and the host session. */
export const names = {
  learningRate: 'learning_rate',
  step: 'step',
  loss: 'loss',
  gradNorm: 'grad_norm',
  state: (parameter: string, suffix: string) => `${parameter}.${suffix}`,
  accumulator: (parameter: string) => `${parameter}.grad_accumulator`,
  next: (name: string) => `next:${name}`,
  metric: (name: string) => `metric:${name}`,
};

export function compileTraining(
  build: (graph: Graph) => LossProgram,
  options: TrainStepOptions,
): CompiledTraining {
  if (!Number.isInteger(options.gradientAccumulationSteps) || options.gradientAccumulationSteps < 1) {
    throw new RangeError(
      `gradientAccumulationSteps must be an integer ≥ 1, got ${options.gradientAccumulationSteps}`,
    );
  }
  if (!(options.maxGradNorm >= 0 && Number.isFinite(options.maxGradNorm)))
    throw new RangeError(
      `maxGradNorm must be a finite number ≥ 0 (0 disables clipping), got ${options.maxGradNorm}`,
    );
  const accumulating = options.gradientAccumulationSteps > 1;
  const updateModel = buildModel(build, options, 'update');
  return {
    update: updateModel.bytes,
    accumulate: accumulating ? buildModel(build, options, 'accumulate').bytes : undefined,
    parameters: updateModel.parameters,
    stateSuffixes: stateSuffixes(options.optimizer),
    metricNames: updateModel.metricNames,
    options,
  };
}

export interface CompiledEvaluation {
  /** Forward only: the same inputs as the training models (trainable weights included), loss and metrics out. */
  model: Uint8Array;
  metricNames: readonly string[];
}

/** The loss program without backward or update, for evaluation with the weights being trained. */
export function compileEvaluation(build: (graph: Graph) => LossProgram): CompiledEvaluation {
  const graph = new Graph('evaluate');
  const program = build(graph);
  graph.output(names.loss, program.loss);
  for (const [name, metric] of Object.entries(program.metrics ?? {}))
    graph.output(names.metric(name), metric);
  return { model: serializeModel(graph), metricNames: Object.keys(program.metrics ?? {}) };
}

function buildModel(
  build: (graph: Graph) => LossProgram,
  options: TrainStepOptions,
  kind: 'update' | 'accumulate',
) {
  const graph = new Graph(`train_${kind}`);
  const program = build(graph);
  const { loss, trainable } = program;
  if (loss.rank !== 0) throw new RangeError(`the training loss must be a scalar, got ${loss}`);
  if (trainable.length === 0) throw new RangeError('the loss program lists no trainable parameters');
  const parameters = trainable.map(describeTrainable);
  const duplicate = parameters.find((p, i) => parameters.findIndex((q) => q.name === p.name) !== i);
  if (duplicate) throw new RangeError(`trainable parameter ${duplicate.name} is listed twice`);
  const metricNames = Object.keys(program.metrics ?? {});
  graph.output(names.loss, loss);
  for (const [name, metric] of Object.entries(program.metrics ?? {}))
    graph.output(names.metric(name), metric);

  // Micro-batch losses are means, so the update's loss is their mean: each micro-batch backpropagates
  // loss / K, as the HF Trainer does (the seed replaces a per-gradient multiply).
  const accumulationSteps = options.gradientAccumulationSteps;
  const seed = accumulationSteps === 1 ? undefined : graph.scalar(1 / accumulationSteps, loss.dtype);
  let gradients = grad(loss, trainable, { seed });
  if (accumulationSteps > 1) {
    gradients = gradients.map((gradient, i) => {
      const { name, dims } = parameters[i];
      return op.add(graph.input(names.accumulator(name), gradient.dtype, dims), gradient);
    });
  }
  if (kind === 'accumulate') {
    for (const [i, gradient] of gradients.entries()) {
      graph.output(names.next(names.accumulator(parameters[i].name)), gradient);
    }
    return { bytes: serializeModel(graph), parameters, metricNames };
  }

  const norm = globalNorm(gradients);
  graph.output(names.gradNorm, norm);
  if (options.maxGradNorm > 0) gradients = clipByGlobalNorm(gradients, norm, options.maxGradNorm);
  const optimizer = createOptimizer(options.optimizer, {
    learningRate: graph.input(names.learningRate, 'float64', []),
    step: graph.input(names.step, 'float64', []),
  });
  const decays = options.decays ?? defaultDecays;
  for (const [i, parameter] of trainable.entries()) {
    const { name, dims } = parameters[i];
    const state = optimizer.stateSuffixes.map((suffix) =>
      graph.input(names.state(name, suffix), parameter.dtype, dims),
    );
    const next = optimizer.update({ parameter, gradient: gradients[i], state, decay: decays(name, dims) });
    graph.output(names.next(name), next.parameter);
    for (const [s, tensor] of next.state.entries())
      graph.output(names.next(names.state(name, optimizer.stateSuffixes[s])), tensor);
  }
  return { bytes: serializeModel(graph), parameters, metricNames };
}

function describeTrainable(tensor: Tensor): TrainableParameter {
  if (tensor.source.kind !== 'input') throw new RangeError(`trainable ${tensor} must be a graph input`);
  if (!isFloat(tensor.dtype)) throw new RangeError(`trainable ${tensor} must be a float tensor`);
  if (!tensor.dims.every((dim) => typeof dim === 'number')) {
    throw new RangeError(`trainable ${tensor} must have static dims`);
  }
  return { name: tensor.name, dims: tensor.dims as number[], dtype: tensor.dtype };
}
