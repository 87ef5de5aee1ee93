// What every op file shares: the gradient-rule contract, number-to-constant promotion, dtype checks.

import { type DType, isFloat } from '../dtype.ts';
import type { Graph, Node, Tensor } from '../graph.ts';
import { ShapeError } from './dims.ts';

/** A plain number is promoted to a scalar constant of the other operand's dtype. */
export type TensorLike = Tensor | number;

export interface GradientContext {
  readonly node: Node;
  readonly inputs: readonly (Tensor | undefined)[];
  readonly outputs: readonly Tensor[];
  /** Gradient of the loss with respect to each output; undefined where an output does not reach the loss. */
  readonly gradOutputs: readonly (Tensor | undefined)[];
}

/**
 * One entry per node input: a thunk building that input's gradient (same dtype and dims as the input),
 * or undefined for inputs that take none (indices, conditions, shapes). Autodiff calls only the thunks
 * of inputs on a path to the loss, so no nodes are built for unused branches.
 */
export type GradientRule = (context: GradientContext) => readonly ((() => Tensor) | undefined)[];

/** The gradient of a single-output node's output, which autodiff always supplies. */
export function outputGradient(context: GradientContext): Tensor {
  const gradient = context.gradOutputs[0];
  if (!gradient)
    throw new Error(`${context.node.opType} (node ${context.node.name}): missing output gradient`);
  return gradient;
}

function graphOf(opName: string, values: readonly TensorLike[]): Graph {
  const tensors = values.filter((value): value is Tensor => typeof value !== 'number');
  if (tensors.length === 0)
    throw new ShapeError(`${opName}: needs at least one tensor operand, got only numbers`);
  return tensors[0].graph;
}

/** Turns numbers into scalar constants matching `like`'s dtype. */
function asTensor(value: TensorLike, like: Tensor): Tensor {
  return typeof value === 'number' ? like.graph.scalar(value, like.dtype) : value;
}

/** Promotes numbers against the first tensor operand, then checks all dtypes agree. */
export function sameDtypeOperands(opName: string, values: readonly TensorLike[]): Tensor[] {
  const graph = graphOf(opName, values);
  const like = values.find((value): value is Tensor => typeof value !== 'number')!;
  const tensors = values.map((value) => asTensor(value, like));
  for (const tensor of tensors) {
    if (tensor.graph !== graph) throw new ShapeError(`${opName}: operands come from different graphs`);
    if (tensor.dtype !== like.dtype) {
      throw new ShapeError(`${opName}: dtype mismatch ${tensors.map((t) => t.dtype).join(' vs ')}`);
    }
  }
  return tensors;
}

export function requireFloat(opName: string, tensor: Tensor): void {
  if (!isFloat(tensor.dtype)) throw new ShapeError(`${opName}: needs a float tensor, got ${tensor}`);
}

export function requireDtype(opName: string, tensor: Tensor, allowed: readonly DType[]): void {
  if (!allowed.includes(tensor.dtype)) {
    throw new ShapeError(`${opName}: needs ${allowed.join(' or ')}, got ${tensor}`);
  }
}

/** The constant int64 vector a node takes as input `index` (axes, starts, ends). */
export function constantInts(context: GradientContext, index: number): number[] {
  const tensor = context.inputs[index];
  const value = tensor?.graph.constantValue(tensor);
  if (!value)
    throw new ShapeError(
      `${context.node.opType} (node ${context.node.name}): input ${index} is not a constant`,
    );
  return Array.from(value.data as BigInt64Array, Number);
}

/** Memoizes a lazily built value, for gradient thunks that share work. */
export function lazy<T>(build: () => T): () => T {
  let built: { value: T } | undefined;
  return () => {
    built ??= { value: build() };
    return built.value;
  };
}
