// Neural-network primitives ONNX Runtime runs as single fused kernels: Softmax, LogSoftmax (both stable)
// and LayerNormalization, with gradients. Legend: D normalized width; y output; g output gradient.

import { attr, type Tensor } from '../graph.ts';
import { type GradientRule, lazy, outputGradient, requireFloat, sameDtypeOperands } from './core.ts';
import { formatDims, normalizeAxis, ShapeError, shapesEqual } from './dims.ts';
import { add, exp, mul, reciprocal, sqrt, sub } from './elementwise.ts';
import { reduceMean, reduceSum, sumToShape } from './reduce.ts';

export function softmax(x: Tensor, axis = -1): Tensor {
  requireFloat('Softmax', x);
  const at = normalizeAxis('Softmax', axis, x.rank);
  return x.graph.addNode('Softmax', [x], [{ dtype: x.dtype, dims: x.dims }], { axis: attr.int(at) })[0];
}

/** dx = y ⊙ (g − Σ g⊙y) along the axis. */
export const softmaxGradient: GradientRule = (context) => {
  const y = context.outputs[0];
  const g = outputGradient(context);
  const axis = context.node.attributes.axis.value as number;
  return [() => mul(y, sub(g, reduceSum(mul(g, y), axis, true)))];
};

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  requireFloat('LogSoftmax', x);
  const at = normalizeAxis('LogSoftmax', axis, x.rank);
  return x.graph.addNode('LogSoftmax', [x], [{ dtype: x.dtype, dims: x.dims }], { axis: attr.int(at) })[0];
}

/** dx = g − exp(y) ⊙ Σ g along the axis. */
export const logSoftmaxGradient: GradientRule = (context) => {
  const y = context.outputs[0];
  const g = outputGradient(context);
  const axis = context.node.attributes.axis.value as number;
  return [() => sub(g, mul(exp(y), reduceSum(g, axis, true)))];
};

export interface LayerNormOptions {
  /** First normalized axis; all axes from it to the last are normalized. */
  axis?: number;
  epsilon?: number;
}

/**
 * (x − mean) / √(var + ε) · scale + bias over axes [axis, rank); scale and bias have dims x.dims[axis:].
 * The node also yields Mean and InvStdDev, which ONNX Runtime computes anyway; the gradient reuses them.
 */
export function layerNorm(x: Tensor, scale: Tensor, bias?: Tensor, options: LayerNormOptions = {}): Tensor {
  const [input, weight, ...rest] = sameDtypeOperands(
    'LayerNormalization',
    bias ? [x, scale, bias] : [x, scale],
  );
  requireFloat('LayerNormalization', input);
  const axis = normalizeAxis('LayerNormalization', options.axis ?? -1, input.rank);
  const normalizedDims = input.dims.slice(axis);
  for (const parameter of [weight, ...rest]) {
    if (!shapesEqual(parameter.dims, normalizedDims)) {
      throw new ShapeError(
        `LayerNormalization: scale/bias ${formatDims(parameter.dims)} must be ${formatDims(normalizedDims)} for ${input}`,
      );
    }
  }
  // ONNX Runtime's kernels emit the statistics in float32 whatever the input dtype (stash_type 1).
  const statsDims = input.dims.map((dim, i) => (i < axis ? dim : 1));
  const outputs = [
    { dtype: input.dtype, dims: input.dims },
    { dtype: 'float32' as const, dims: statsDims },
    { dtype: 'float32' as const, dims: statsDims },
  ];
  const attributes = { axis: attr.int(axis), epsilon: attr.float(options.epsilon ?? 1e-5) };
  return input.graph.addNode('LayerNormalization', [input, weight, ...rest], outputs, attributes)[0];
}

/**
 * With x̂ = (x − mean)·r (r = 1/σ): dscale = Σ g⊙x̂, dbias = Σ g over the leading axes, and
 * dx = r · (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ⊙x̂)) with ĝ = g⊙scale. For float32 the node's own statistics are
 * used; for other dtypes they are recomputed in the input's dtype (float64 must not lose precision to
 * the float32 statistics).
 */
export const layerNormGradient: GradientRule = (context) => {
  const [x, scale, bias] = context.inputs as Tensor[];
  const [, mean, invStdDev] = context.outputs;
  const g = outputGradient(context);
  const axis = context.node.attributes.axis.value as number;
  const epsilon = context.node.attributes.epsilon.value as number;
  const axes = [...x.dims.keys()].slice(axis);
  const normalized = lazy(() => {
    if (x.dtype === mean.dtype) return { xHat: mul(sub(x, mean), invStdDev), invStd: invStdDev };
    const centered = sub(x, reduceMean(x, axes, true));
    const invStd = reciprocal(sqrt(add(reduceMean(mul(centered, centered), axes, true), epsilon)));
    return { xHat: mul(centered, invStd), invStd };
  });
  const inputGradient = () => {
    const { xHat, invStd } = normalized();
    const gHat = mul(g, scale);
    const centeredG = sub(gHat, reduceMean(gHat, axes, true));
    return mul(invStd, sub(centeredG, mul(xHat, reduceMean(mul(gHat, xHat), axes, true))));
  };
  return [
    inputGradient,
    () => sumToShape(mul(g, normalized().xHat), scale.dims),
    bias ? () => sumToShape(g, bias.dims) : undefined,
  ];
};
