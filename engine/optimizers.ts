// Optimizers written as graph ops, so the update runs inside the same ONNX Runtime call as forward and
// backward. Semantics follow PyTorch (torch.optim.AdamW, torch.optim.SGD, clip_grad_norm_) to the operation
// order, so float64 runs match PyTorch to rounding. Learning rate and step are float64 graph inputs.

import type { DType } from './dtype.ts';
import type { Tensor } from './graph.ts';
import * as op from './ops/index.ts';

export type OptimizerConfig =
  | { type: 'adamw'; beta1: number; beta2: number; epsilon: number; weightDecay: number }
  | { type: 'sgd'; momentum: number; weightDecay: number };

export const defaultAdamW: OptimizerConfig = {
  type: 'adamw',
  beta1: 0.9,
  beta2: 0.999,
  epsilon: 1e-8,
  weightDecay: 0,
};

/** Names of the per-parameter state tensors an optimizer keeps, in the order `update` takes them. */
export function stateSuffixes(config: OptimizerConfig): readonly string[] {
  if (config.type === 'adamw') return ['exp_avg', 'exp_avg_sq'];
  return config.momentum === 0 ? [] : ['momentum_buffer'];
}

/** The schedule's values for this update: float64 scalars, as PyTorch keeps lr and step as Python floats. */
export interface StepInputs {
  learningRate: Tensor; // float64 scalar
  step: Tensor; // float64 scalar: 1 for the first update
}

export interface ParameterUpdate {
  parameter: Tensor;
  gradient: Tensor; // same dims and dtype as the parameter
  /** One tensor per stateSuffixes entry, same dims and dtype as the parameter. */
  state: readonly Tensor[];
  /** Whether weight decay applies to this parameter. */
  decay: boolean;
}

export interface UpdateOutputs {
  parameter: Tensor;
  state: Tensor[];
}

/** Updates parameters one at a time; scalars shared by every parameter are built once per graph. */
export interface Optimizer {
  readonly stateSuffixes: readonly string[];
  update(inputs: ParameterUpdate): UpdateOutputs;
}

export function createOptimizer(config: OptimizerConfig, step: StepInputs): Optimizer {
  for (const input of [step.learningRate, step.step]) {
    if (input.dtype !== 'float64' || input.rank !== 0)
      throw new RangeError(`optimizer step input ${input} must be a float64 scalar`);
  }
  const scalars = scalarCache();
  const suffixes = stateSuffixes(config);
  const update = config.type === 'adamw' ? adamw(config, step, scalars) : sgd(config, step, scalars);
  return { stateSuffixes: suffixes, update };
}

/**
 * Per-update scalars, computed once in float64 (PyTorch does this arithmetic on Python floats: in float32,
 * 1 − 0.999¹ alone would be off by 1e-5 relative) and cast once per parameter dtype.
 */
function scalarCache() {
  const cache = new Map<string, Tensor>();
  return (name: string, dtype: DType, compute: () => Tensor): Tensor => {
    let exact = cache.get(name);
    if (!exact) {
      exact = compute();
      cache.set(name, exact);
    }
    const key = `${name}:${dtype}`;
    let cast = cache.get(key);
    if (!cast) {
      cast = op.cast(exact, dtype);
      cache.set(key, cast);
    }
    return cast;
  };
}
type Scalars = ReturnType<typeof scalarCache>;

/** torch.optim.AdamW: decoupled decay p ← p(1 − lr·wd), then p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε). */
function adamw(
  config: Extract<OptimizerConfig, { type: 'adamw' }>,
  { learningRate, step }: StepInputs,
  scalars: Scalars,
) {
  const { beta1, beta2, epsilon, weightDecay } = config;
  return ({ parameter, gradient, state, decay }: ParameterUpdate): UpdateOutputs => {
    const dtype = parameter.dtype;
    const [expAvg, expAvgSq] = state;
    const decayed =
      decay && weightDecay !== 0
        ? op.mul(
            parameter,
            scalars('decay_factor', dtype, () => op.sub(1, op.mul(learningRate, weightDecay))),
          )
        : parameter;
    // exp_avg.lerp_(grad, 1 − β1) computes m + (1 − β1)(g − m).
    const nextExpAvg = op.add(expAvg, op.mul(op.sub(gradient, expAvg), 1 - beta1));
    const nextExpAvgSq = op.add(op.mul(expAvgSq, beta2), op.mul(op.mul(gradient, gradient), 1 - beta2));
    const stepSize = scalars('step_size', dtype, () => op.div(learningRate, op.sub(1, op.pow(beta1, step))));
    const biasCorrection2Sqrt = scalars('bias_correction2_sqrt', dtype, () =>
      op.sqrt(op.sub(1, op.pow(beta2, step))),
    );
    const denominator = op.add(op.div(op.sqrt(nextExpAvgSq), biasCorrection2Sqrt), epsilon);
    // param.addcdiv_(exp_avg, denom, value=−step_size)
    const next = op.sub(decayed, op.mul(op.div(nextExpAvg, denominator), stepSize));
    return { parameter: next, state: [nextExpAvg, nextExpAvgSq] };
  };
}

/** torch.optim.SGD (dampening 0, not Nesterov): g ← g + wd·p; b ← μ·b + g (b starts at 0, so b₁ = g); p ← p − lr·b. */
function sgd(
  config: Extract<OptimizerConfig, { type: 'sgd' }>,
  { learningRate }: StepInputs,
  scalars: Scalars,
) {
  const { momentum, weightDecay } = config;
  return ({ parameter, gradient, state, decay }: ParameterUpdate): UpdateOutputs => {
    const lr = scalars('learning_rate', parameter.dtype, () => learningRate);
    const decayed = decay && weightDecay !== 0 ? op.add(gradient, op.mul(parameter, weightDecay)) : gradient;
    if (momentum === 0) return { parameter: op.sub(parameter, op.mul(decayed, lr)), state: [] };
    const buffer = op.add(op.mul(state[0], momentum), decayed);
    return { parameter: op.sub(parameter, op.mul(buffer, lr)), state: [buffer] };
  };
}

/** √Σ‖g‖² over every gradient (the norm TRL logs as grad_norm, before clipping). */
export function globalNorm(gradients: readonly Tensor[]): Tensor {
  const squares = gradients.map((gradient) => op.reduceSum(op.mul(gradient, gradient)));
  const total = squares.reduce((sum, square) => op.add(sum, square));
  return op.sqrt(total);
}

/**
 * torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to ≤ 1, multiplied into every
 * gradient. Branch-free, so one graph serves steps that clip and steps that don't.
 */
export function clipByGlobalNorm(gradients: readonly Tensor[], norm: Tensor, maxNorm: number): Tensor[] {
  if (!(maxNorm > 0)) throw new RangeError(`clipping needs maxNorm > 0, got ${maxNorm}`);
  const coefficient = op.div(maxNorm, op.add(norm, 1e-6));
  const clamped = op.where(op.less(coefficient, 1), coefficient, 1);
  return gradients.map((gradient) => op.mul(gradient, clamped));
}
