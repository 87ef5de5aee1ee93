// Elementwise ops with numpy broadcasting, each followed by its gradient. Gradients of broadcast operands
// are summed back to the operand's shape (sumToShape). x, y = input, output; g = gradient of the output.

import { type DType, onnxDataType } from '../dtype.ts';
import { attr, type Tensor } from '../graph.ts';
import {
  type GradientRule,
  outputGradient,
  requireDtype,
  requireFloat,
  sameDtypeOperands,
  type TensorLike,
} from './core.ts';
import { broadcastShapes } from './dims.ts';
import { sumToShape } from './reduce.ts';

function binary(opType: string, a: TensorLike, b: TensorLike, outDtype?: DType): Tensor {
  const [x, y] = sameDtypeOperands(opType, [a, b]);
  const dims = broadcastShapes(opType, [x.dims, y.dims]);
  return x.graph.addNode(opType, [x, y], [{ dtype: outDtype ?? x.dtype, dims }])[0];
}

function unary(opType: string, x: Tensor): Tensor {
  requireFloat(opType, x);
  return x.graph.addNode(opType, [x], [{ dtype: x.dtype, dims: x.dims }])[0];
}

/** Inputs and output of a binary node, and the output gradient. */
function binaryContext(context: Parameters<GradientRule>[0]) {
  const [a, b] = context.inputs as Tensor[];
  return { a, b, y: context.outputs[0], g: outputGradient(context) };
}

/** Inputs and output of a unary node, and the output gradient. */
function unaryContext(context: Parameters<GradientRule>[0]) {
  return { x: context.inputs[0] as Tensor, y: context.outputs[0], g: outputGradient(context) };
}

// ---- arithmetic -------------------------------------------------------------------------------------

export function add(a: TensorLike, b: TensorLike): Tensor {
  return binary('Add', a, b);
}

export const addGradient: GradientRule = (context) => {
  const { a, b, g } = binaryContext(context);
  return [() => sumToShape(g, a.dims), () => sumToShape(g, b.dims)];
};

export function sub(a: TensorLike, b: TensorLike): Tensor {
  return binary('Sub', a, b);
}

export const subGradient: GradientRule = (context) => {
  const { a, b, g } = binaryContext(context);
  return [() => sumToShape(g, a.dims), () => sumToShape(neg(g), b.dims)];
};

export function mul(a: TensorLike, b: TensorLike): Tensor {
  return binary('Mul', a, b);
}

export const mulGradient: GradientRule = (context) => {
  const { a, b, g } = binaryContext(context);
  return [() => sumToShape(mul(g, b), a.dims), () => sumToShape(mul(g, a), b.dims)];
};

export function div(a: TensorLike, b: TensorLike): Tensor {
  return binary('Div', a, b);
}

/** d(a/b)/da = 1/b; d(a/b)/db = −y/b. */
export const divGradient: GradientRule = (context) => {
  const { a, b, y, g } = binaryContext(context);
  return [() => sumToShape(div(g, b), a.dims), () => sumToShape(neg(div(mul(g, y), b)), b.dims)];
};

export function pow(base: TensorLike, exponent: TensorLike): Tensor {
  return binary('Pow', base, exponent);
}

/**
 * d(a^b)/da = b·a^(b−1), folded at build time when b is a scalar constant (x² → 2x);
 * d(a^b)/db = y·log(a).
 */
export const powGradient: GradientRule = (context) => {
  const { a, b, y, g } = binaryContext(context);
  const baseGradient = () => {
    const constantExponent = a.graph.constantValue(b);
    if (constantExponent && constantExponent.dims.length === 0 && b.dtype !== 'float16') {
      const c = Number(constantExponent.data[0]);
      const slope = c === 2 ? a : pow(a, c - 1);
      return sumToShape(mul(g, mul(slope, c)), a.dims);
    }
    return sumToShape(mul(g, mul(b, pow(a, sub(b, 1)))), a.dims);
  };
  return [baseGradient, () => sumToShape(mul(g, mul(y, log(a))), b.dims)];
};

export function neg(x: Tensor): Tensor {
  return unary('Neg', x);
}

export const negGradient: GradientRule = (context) => [() => neg(outputGradient(context))];

// ---- unary math -------------------------------------------------------------------------------------

export function sqrt(x: Tensor): Tensor {
  return unary('Sqrt', x);
}

/** d√x = 1/(2y). */
export const sqrtGradient: GradientRule = (context) => {
  const { y, g } = unaryContext(context);
  return [() => div(mul(g, 0.5), y)];
};

export function reciprocal(x: Tensor): Tensor {
  return unary('Reciprocal', x);
}

/** d(1/x) = −y². */
export const reciprocalGradient: GradientRule = (context) => {
  const { y, g } = unaryContext(context);
  return [() => mul(g, neg(mul(y, y)))];
};

export function exp(x: Tensor): Tensor {
  return unary('Exp', x);
}

export const expGradient: GradientRule = (context) => {
  const { y, g } = unaryContext(context);
  return [() => mul(g, y)];
};

export function log(x: Tensor): Tensor {
  return unary('Log', x);
}

export const logGradient: GradientRule = (context) => {
  const { x, g } = unaryContext(context);
  return [() => div(g, x)];
};

export function tanh(x: Tensor): Tensor {
  return unary('Tanh', x);
}

/** d tanh = 1 − y². */
export const tanhGradient: GradientRule = (context) => {
  const { y, g } = unaryContext(context);
  return [() => mul(g, sub(1, mul(y, y)))];
};

export function erf(x: Tensor): Tensor {
  return unary('Erf', x);
}

/** d erf = 2/√π · exp(−x²). */
export const erfGradient: GradientRule = (context) => {
  const { x, g } = unaryContext(context);
  return [() => mul(g, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI)))];
};

export function sigmoid(x: Tensor): Tensor {
  return unary('Sigmoid', x);
}

/** dσ = y(1 − y). */
export const sigmoidGradient: GradientRule = (context) => {
  const { y, g } = unaryContext(context);
  return [() => mul(g, mul(y, sub(1, y)))];
};

export function relu(x: Tensor): Tensor {
  return unary('Relu', x);
}

/** Gradient 1 where x > 0, else 0 (0 at the kink, as PyTorch). */
export const reluGradient: GradientRule = (context) => {
  const { x, g } = unaryContext(context);
  return [() => where(greater(x, 0), g, 0)];
};

export function sin(x: Tensor): Tensor {
  return unary('Sin', x);
}

export const sinGradient: GradientRule = (context) => {
  const { x, g } = unaryContext(context);
  return [() => mul(g, cos(x))];
};

export function cos(x: Tensor): Tensor {
  return unary('Cos', x);
}

export const cosGradient: GradientRule = (context) => {
  const { x, g } = unaryContext(context);
  return [() => mul(g, neg(sin(x)))];
};

// ---- selection, comparison, casts -------------------------------------------------------------------

/** condition ? a : b, broadcasting all three. */
export function where(condition: Tensor, a: TensorLike, b: TensorLike): Tensor {
  requireDtype('Where', condition, ['bool']);
  const [x, y] = sameDtypeOperands('Where', [a, b]);
  const dims = broadcastShapes('Where', [condition.dims, x.dims, y.dims]);
  return x.graph.addNode('Where', [condition, x, y], [{ dtype: x.dtype, dims }])[0];
}

export const whereGradient: GradientRule = (context) => {
  const [condition, a, b] = context.inputs as Tensor[];
  const g = outputGradient(context);
  return [
    undefined,
    () => sumToShape(where(condition, g, 0), a.dims),
    () => sumToShape(where(condition, 0, g), b.dims),
  ];
};

export function equal(a: TensorLike, b: TensorLike): Tensor {
  return binary('Equal', a, b, 'bool');
}

export function less(a: TensorLike, b: TensorLike): Tensor {
  return binary('Less', a, b, 'bool');
}

export function lessOrEqual(a: TensorLike, b: TensorLike): Tensor {
  return binary('LessOrEqual', a, b, 'bool');
}

export function greater(a: TensorLike, b: TensorLike): Tensor {
  return binary('Greater', a, b, 'bool');
}

export function greaterOrEqual(a: TensorLike, b: TensorLike): Tensor {
  return binary('GreaterOrEqual', a, b, 'bool');
}

export function logicalAnd(a: Tensor, b: Tensor): Tensor {
  requireDtype('And', a, ['bool']);
  return binary('And', a, b);
}

export function logicalOr(a: Tensor, b: Tensor): Tensor {
  requireDtype('Or', a, ['bool']);
  return binary('Or', a, b);
}

export function logicalNot(x: Tensor): Tensor {
  requireDtype('Not', x, ['bool']);
  return x.graph.addNode('Not', [x], [{ dtype: 'bool', dims: x.dims }])[0];
}

/** Converts dtype; a cast to the same dtype adds no node. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  return x.graph.addNode('Cast', [x], [{ dtype, dims: x.dims }], { to: attr.int(onnxDataType[dtype]) })[0];
}

/** Casts the gradient back; autodiff reaches this only from float inputs (ints and bools carry none). */
export const castGradient: GradientRule = (context) => {
  const { x, g } = unaryContext(context);
  return [() => cast(g, x.dtype)];
};
