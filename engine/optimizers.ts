// Optimizers written as graph ops, so the update runs inside the same ONNX Runtime call as forward and
// backward. Semantics follow PyTorch (torch.optim.AdamW, torch.optim.SGD, clip_grad_norm_) to the operation
// order, so float64 runs match a reference to rounding. Learning rate and step are graph inputs.

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
  return config.type === 'adamw' ? ['exp_avg', 'exp_avg_sq'] : ['momentum_buffer'];
}

export interface UpdateInputs {
  parameter: Tensor;
  gradient: Tensor;
  /** One tensor per stateSuffixes entry, same dims as the parameter. */
  state: readonly Tensor[];
  learningRate: Tensor; // scalar, parameter dtype
  step: Tensor; // scalar, parameter dtype: 1 for the first update
  decay: boolean; // weight decay applies to this parameter
}

export interface UpdateOutputs {
  parameter: Tensor;
  state: Tensor[];
}

export function update(config: OptimizerConfig, inputs: UpdateInputs): UpdateOutputs {
  return config.type === 'adamw' ? adamw(config, inputs) : sgd(config, inputs);
}

/** torch.optim.AdamW: decoupled decay p ← p(1 − lr·wd), then p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε). */
function adamw(config: Extract<OptimizerConfig, { type: 'adamw' }>, inputs: UpdateInputs): UpdateOutputs {
  const { parameter, gradient, learningRate, step } = inputs;
  const [expAvg, expAvgSq] = inputs.state;
  const { beta1, beta2, epsilon, weightDecay } = config;
  const decayed =
    inputs.decay && weightDecay !== 0
      ? op.mul(parameter, op.sub(1, op.mul(learningRate, weightDecay)))
      : parameter;
  // exp_avg.lerp_(grad, 1 − β1) computes m + (1 − β1)(g − m).
  const nextExpAvg = op.add(expAvg, op.mul(op.sub(gradient, expAvg), 1 - beta1));
  const nextExpAvgSq = op.add(op.mul(expAvgSq, beta2), op.mul(op.mul(gradient, gradient), 1 - beta2));
  const biasCorrection1 = op.sub(1, op.pow(beta1, step));
  const biasCorrection2Sqrt = op.sqrt(op.sub(1, op.pow(beta2, step)));
  const stepSize = op.div(learningRate, biasCorrection1);
  const denominator = op.add(op.div(op.sqrt(nextExpAvgSq), biasCorrection2Sqrt), epsilon);
  const next = op.sub(decayed, op.mul(op.div(nextExpAvg, denominator), stepSize));
  return { parameter: next, state: [nextExpAvg, nextExpAvgSq] };
}

/** torch.optim.SGD (dampening 0, not Nesterov): g ← g + wd·p; b ← μ·b + g (b starts at 0, so b₁ = g); p ← p − lr·b. */
function sgd(config: Extract<OptimizerConfig, { type: 'sgd' }>, inputs: UpdateInputs): UpdateOutputs {
  const { parameter, learningRate } = inputs;
  const gradient =
    inputs.decay && config.weightDecay !== 0
      ? op.add(inputs.gradient, op.mul(parameter, config.weightDecay))
      : inputs.gradient;
  if (config.momentum === 0)
    return { parameter: op.sub(parameter, op.mul(gradient, learningRate)), state: [] };
  const buffer = op.add(op.mul(inputs.state[0], config.momentum), gradient);
  return { parameter: op.sub(parameter, op.mul(buffer, learningRate)), state: [buffer] };
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
  const coefficient = op.div(maxNorm, op.add(norm, 1e-6));
  const clamped = op.where(op.less(coefficient, 1), coefficient, 1);
  return gradients.map((gradient) => op.mul(gradient, clamped));
}
