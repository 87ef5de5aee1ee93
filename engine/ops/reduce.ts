// Reductions (ReduceSum/Mean/Max, axes as an input as opset 18 wants) with their gradients, and
// sumToShape: the reduction every broadcasting op's gradient ends with.

import type { Tensor } from '../graph.ts';
import { attr } from '../graph.ts';
import {
  constantInts,
  type GradientContext,
  type GradientRule,
  outputGradient,
  requireFloat,
} from './core.ts';
import { type Dim, dimProduct, dimsEqual, formatDims, normalizeAxes, ShapeError } from './dims.ts';
import { cast, div, equal, mul } from './elementwise.ts';
import { expandAs, squeeze, unsqueeze } from './shape.ts';

/** Axes to reduce: one axis, a list, or undefined for all. */
export type Axes = number | readonly number[] | undefined;

function reduce(opType: string, x: Tensor, axes: Axes, keepDims: boolean): Tensor {
  const all = [...x.dims.keys()];
  const normalized = normalizeAxes(
    opType,
    axes === undefined ? all : typeof axes === 'number' ? [axes] : axes,
    x.rank,
  );
  if (normalized.length === 0) return x;
  const dims = keepDims
    ? x.dims.map((dim, i) => (normalized.includes(i) ? 1 : dim))
    : x.dims.filter((_, i) => !normalized.includes(i));
  const inputs = [x, x.graph.int64s(normalized)];
  return x.graph.addNode(opType, inputs, [{ dtype: x.dtype, dims }], {
    keepdims: attr.int(keepDims ? 1 : 0),
  })[0];
}

export function reduceSum(x: Tensor, axes?: Axes, keepDims = false): Tensor {
  return reduce('ReduceSum', x, axes, keepDims);
}

export function reduceMean(x: Tensor, axes?: Axes, keepDims = false): Tensor {
  requireFloat('ReduceMean', x);
  return reduce('ReduceMean', x, axes, keepDims);
}

export function reduceMax(x: Tensor, axes?: Axes, keepDims = false): Tensor {
  return reduce('ReduceMax', x, axes, keepDims);
}

/**
 * The node's input, reduced axes, and a view of the output gradient that broadcasts against the input:
 * reduced axes restored as size 1, unless they are leading axes, which broadcasting restores by itself.
 */
function reductionContext(context: GradientContext) {
  const x = context.inputs[0] as Tensor;
  const axes = constantInts(context, 1);
  const y = context.outputs[0];
  const broadcastsAsIs = context.node.attributes.keepdims.value === 1 || axes.every((axis, i) => axis === i);
  const restore = (t: Tensor) => (broadcastsAsIs ? t : unsqueeze(t, axes));
  return { x, axes, y, gKept: restore(outputGradient(context)), yKept: () => restore(y) };
}

/** Every reduced element receives g. */
export const reduceSumGradient: GradientRule = (context) => {
  const { x, gKept } = reductionContext(context);
  return [() => expandAs(gKept, x), undefined];
};

/** Every reduced element receives g / count; count is read at run time when the axes are named. */
export const reduceMeanGradient: GradientRule = (context) => {
  const { x, axes, y, gKept } = reductionContext(context);
  return [
    () => {
      const count = dimProduct(axes.map((axis) => x.dims[axis]));
      const graph = x.graph;
      const runtimeCount = () => {
        const size = (t: Tensor) => graph.addNode('Size', [t], [{ dtype: 'int64', dims: [] }])[0];
        return cast(div(size(x), size(y)), x.dtype);
      };
      return expandAs(div(gKept, typeof count === 'number' ? count : runtimeCount()), x);
    },
    undefined,
  ];
};

/** The maximum's gradient is shared equally among tied maxima (as PyTorch's amax). */
export const reduceMaxGradient: GradientRule = (context) => {
  const { x, axes, yKept, gKept } = reductionContext(context);
  return [
    () => {
      const isMax = cast(equal(x, yKept()), x.dtype);
      return mul(isMax, div(gKept, reduceSum(isMax, axes, true)));
    },
    undefined,
  ];
};

/**
 * Sums a broadcast gradient back to an operand's dims: leading axes the operand lacks are summed away,
 * axes where the operand has a static 1 are summed and kept. One ReduceSum (plus a Squeeze when both).
 */
export function sumToShape(g: Tensor, dims: readonly Dim[]): Tensor {
  const leading = g.rank - dims.length;
  if (leading < 0) throw new ShapeError(`sumToShape: gradient ${g} has lower rank than ${formatDims(dims)}`);
  const leadingAxes = [...Array(leading).keys()];
  const onesAxes = dims.flatMap((dim, i) => (dim === 1 && g.dims[leading + i] !== 1 ? [leading + i] : []));
  for (const [i, dim] of dims.entries()) {
    if (dim !== 1 && !dimsEqual(dim, g.dims[leading + i])) {
      throw new ShapeError(`sumToShape: gradient ${g} does not broadcast from ${formatDims(dims)}`);
    }
  }
  if (onesAxes.length === 0) return reduceSum(g, leadingAxes, false);
  if (leadingAxes.length === 0) return reduceSum(g, onesAxes, true);
  return squeeze(reduceSum(g, [...leadingAxes, ...onesAxes], true), leadingAxes);
}
