// Shape ops (reshape, transpose, squeeze/unsqueeze, expand, concat, slice, split) with their gradients,
// and the runtime-shape helpers gradients use when dims are named (Shape, ConstantOfShape, Range, Pad).

import { attr, filled, type Graph, type Tensor } from '../graph.ts';
import { constantInts, type GradientRule, lazy, outputGradient, sameDtypeOperands } from './core.ts';
import {
  atom,
  broadcastShapes,
  type Dim,
  dimProduct,
  dimQuotient,
  dimSum,
  dimsEqual,
  formatDims,
  isStaticShape,
  normalizeAxes,
  normalizeAxis,
  ShapeError,
  shapesEqual,
} from './dims.ts';
import { sumToShape } from './reduce.ts';

/** Slice end meaning "to the end of the axis". */
export const END = Number.MAX_SAFE_INTEGER;

// ---- runtime shapes -------------------------------------------------------------------------------

/** int64 [rank]: x's runtime shape; a constant when x is static, else one Shape node shared per tensor. */
export function shapeOf(x: Tensor): Tensor {
  if (isStaticShape(x.dims)) return x.graph.int64s(x.dims);
  return x.graph.memo(
    `shape:${x.id}`,
    () => x.graph.addNode('Shape', [x], [{ dtype: 'int64', dims: [x.rank] }])[0],
  );
}

/** int64 [1]: x's runtime size along one axis, gathered from x's one shared Shape node. */
export function dimOf(x: Tensor, axis: number): Tensor {
  const at = normalizeAxis('Shape', axis, x.rank);
  const dim = x.dims[at];
  if (typeof dim === 'number') return x.graph.int64s([dim]);
  return x.graph.memo(`dim:${x.id}:${at}`, () => gatherDim(x, x.graph.int64s([at]), [1]));
}

/** int64 scalar: x's runtime size along one axis (for Range limits). */
function dimScalar(x: Tensor, axis: number): Tensor {
  const dim = x.dims[axis];
  if (typeof dim === 'number') return x.graph.scalar(dim, 'int64');
  return x.graph.memo(`dimScalar:${x.id}:${axis}`, () => gatherDim(x, x.graph.scalar(axis, 'int64'), []));
}

function gatherDim(x: Tensor, index: Tensor, dims: number[]): Tensor {
  return x.graph.addNode('Gather', [shapeOf(x), index], [{ dtype: 'int64', dims }], { axis: attr.int(0) })[0];
}

/** A 1-D int64 vector from static numbers and runtime [k] pieces; a constant when all are numbers. */
function assembleVector(graph: Graph, pieces: readonly (number | Tensor)[]): Tensor {
  const parts: Tensor[] = [];
  let run: number[] = [];
  for (const piece of pieces) {
    if (typeof piece === 'number') {
      run.push(piece);
      continue;
    }
    if (run.length > 0) parts.push(graph.int64s(run));
    run = [];
    parts.push(piece);
  }
  if (run.length > 0 || parts.length === 0) parts.push(graph.int64s(run));
  return parts.length === 1 ? parts[0] : concat(parts, 0);
}

/** A tensor of zeros with x's dtype and runtime shape. */
export function zerosLike(x: Tensor): Tensor {
  const value = attr.tensor(filled(x.dtype, [1], 0));
  return x.graph.addNode('ConstantOfShape', [shapeOf(x)], [{ dtype: x.dtype, dims: x.dims }], { value })[0];
}

/** int64 [T]: 0, 1, …, T−1 where T = x's size along `axis` (positions for masks and RoPE). */
export function arange(x: Tensor, axis: number): Tensor {
  const graph = x.graph;
  const at = normalizeAxis('Range', axis, x.rank);
  const inputs = [graph.scalar(0, 'int64'), dimScalar(x, at), graph.scalar(1, 'int64')];
  return graph.addNode('Range', inputs, [{ dtype: 'int64', dims: [x.dims[at]] }])[0];
}

// ---- reshape ----------------------------------------------------------------------------------------

/**
 * Reshape to `dims`: static sizes, named dims, and at most one -1 (inferred). Named dims found at the same
 * position in x are copied at run time (ONNX 0); others are read from x's runtime shape.
 */
export function reshape(x: Tensor, dims: readonly Dim[]): Tensor {
  const inferAt = dims.indexOf(-1);
  if (dims.lastIndexOf(-1) !== inferAt)
    throw new ShapeError(`Reshape: more than one -1 in ${formatDims(dims)}`);
  for (const dim of dims) {
    if (typeof dim === 'number' && dim !== -1 && !(Number.isInteger(dim) && dim > 0)) {
      throw new ShapeError(`Reshape: invalid dim ${dim} in ${formatDims(dims)}`);
    }
  }
  const total = dimProduct(x.dims);
  const known = dimProduct(dims.filter((dim) => dim !== -1));
  const inferred = inferAt >= 0 ? dimQuotient(total, known) : undefined;
  if (inferAt >= 0 ? inferred === undefined : !dimsEqual(total, known)) {
    throw new ShapeError(
      `Reshape: cannot reshape ${formatDims(x.dims)} (${total} elements) to ${formatDims(dims)}`,
    );
  }
  const outDims = dims.map((dim) => (dim === -1 ? inferred! : dim));
  if (shapesEqual(outDims, x.dims)) return x;

  const pieces: (number | Tensor)[] = [];
  const unresolved: number[] = [];
  outDims.forEach((dim, i) => {
    if (typeof dim === 'number') pieces.push(dim);
    else if (i < x.rank && dimsEqual(x.dims[i], dim)) pieces.push(0);
    else {
      const from = x.dims.findIndex((candidate) => dimsEqual(candidate, dim));
      pieces.push(from >= 0 ? dimOf(x, from) : -1);
      if (from < 0) unresolved.push(i);
    }
  });
  if (unresolved.length > 1) {
    const names = unresolved.map((i) => outDims[i]).join(', ');
    throw new ShapeError(
      `Reshape: dims ${names} of ${formatDims(outDims)} cannot be read from ${formatDims(x.dims)}`,
    );
  }
  return x.graph.addNode(
    'Reshape',
    [x, assembleVector(x.graph, pieces)],
    [{ dtype: x.dtype, dims: outDims }],
  )[0];
}

/** Reshape to another tensor's (runtime) shape. */
export function reshapeLike(x: Tensor, like: Tensor): Tensor {
  if (shapesEqual(x.dims, like.dims)) return x;
  return x.graph.addNode('Reshape', [x, shapeOf(like)], [{ dtype: x.dtype, dims: like.dims }])[0];
}

export const reshapeGradient: GradientRule = (context) => {
  const [x] = context.inputs as Tensor[];
  return [() => reshapeLike(outputGradient(context), x), undefined];
};

// ---- transpose --------------------------------------------------------------------------------------

/** Permutes axes (output axis i is input axis perm[i]); the default reverses them. */
export function transpose(x: Tensor, perm: readonly number[] = [...x.dims.keys()].reverse()): Tensor {
  const sorted = [...perm].sort((a, b) => a - b);
  if (perm.length !== x.rank || sorted.some((axis, i) => axis !== i)) {
    throw new ShapeError(
      `Transpose: perm [${perm.join(', ')}] is not a permutation of ${x.rank} axes of ${x}`,
    );
  }
  if (perm.every((axis, i) => axis === i)) return x;
  // A transpose of a transpose is one transpose of the original (none when they cancel).
  const producer = x.producer;
  if (producer?.opType === 'Transpose') {
    const inner = producer.attributes.perm.value as readonly number[];
    return transpose(
      producer.inputs[0]!,
      perm.map((axis) => inner[axis]),
    );
  }
  const dims = perm.map((axis) => x.dims[axis]);
  return x.graph.addNode('Transpose', [x], [{ dtype: x.dtype, dims }], { perm: attr.ints(perm) })[0];
}

export const transposeGradient: GradientRule = (context) => {
  const perm = context.node.attributes.perm.value as readonly number[];
  const inverse = perm.map((_, i) => perm.indexOf(i));
  return [() => transpose(outputGradient(context), inverse)];
};

// ---- squeeze / unsqueeze ----------------------------------------------------------------------------

export function squeeze(x: Tensor, axes: number | readonly number[]): Tensor {
  const normalized = normalizeAxes('Squeeze', typeof axes === 'number' ? [axes] : axes, x.rank);
  for (const axis of normalized) {
    if (x.dims[axis] !== 1) throw new ShapeError(`Squeeze: axis ${axis} of ${formatDims(x.dims)} is not 1`);
  }
  if (normalized.length === 0) return x;
  const dims = x.dims.filter((_, i) => !normalized.includes(i));
  return x.graph.addNode('Squeeze', [x, x.graph.int64s(normalized)], [{ dtype: x.dtype, dims }])[0];
}

/** Inserts size-1 axes; `axes` index the output. */
export function unsqueeze(x: Tensor, axes: number | readonly number[]): Tensor {
  const list = typeof axes === 'number' ? [axes] : axes;
  const normalized = normalizeAxes('Unsqueeze', list, x.rank + list.length);
  if (normalized.length === 0) return x;
  const dims: Dim[] = [];
  const rest = [...x.dims];
  for (let i = 0; i < x.rank + normalized.length; i++) dims.push(normalized.includes(i) ? 1 : rest.shift()!);
  return x.graph.addNode('Unsqueeze', [x, x.graph.int64s(normalized)], [{ dtype: x.dtype, dims }])[0];
}

export const squeezeGradient: GradientRule = (context) => [
  () => unsqueeze(outputGradient(context), constantInts(context, 1)),
  undefined,
];

export const unsqueezeGradient: GradientRule = (context) => [
  () => squeeze(outputGradient(context), constantInts(context, 1)),
  undefined,
];

// ---- expand -----------------------------------------------------------------------------------------

/**
 * Broadcasts x to `dims`. A named dim must already be x's dim at the aligned position (it is kept with a
 * runtime 1); to broadcast to a name x lacks, use expandAs.
 */
export function expand(x: Tensor, dims: readonly Dim[]): Tensor {
  const outDims = broadcastShapes('Expand', [x.dims, dims]);
  if (shapesEqual(outDims, x.dims)) return x;
  const offset = dims.length - x.rank;
  const pieces = dims.map((dim, i) => {
    if (typeof dim === 'number') return dim;
    if (i >= offset && dimsEqual(x.dims[i - offset], dim)) return 1;
    throw new ShapeError(
      `Expand: named dim ${dim} of ${formatDims(dims)} is not in ${formatDims(x.dims)}; use expandAs`,
    );
  });
  return x.graph.addNode('Expand', [x, x.graph.int64s(pieces)], [{ dtype: x.dtype, dims: outDims }])[0];
}

/** Broadcasts x to the runtime shape of `like`. */
export function expandAs(x: Tensor, like: Tensor): Tensor {
  const outDims = broadcastShapes('Expand', [x.dims, like.dims]);
  if (shapesEqual(outDims, x.dims)) return x;
  return x.graph.addNode('Expand', [x, shapeOf(like)], [{ dtype: x.dtype, dims: outDims }])[0];
}

export const expandGradient: GradientRule = (context) => {
  const [x] = context.inputs as Tensor[];
  return [() => sumToShape(outputGradient(context), x.dims), undefined];
};

// ---- concat / split ---------------------------------------------------------------------------------

export function concat(tensors: readonly Tensor[], axis: number): Tensor {
  if (tensors.length === 0) throw new ShapeError('Concat: needs at least one tensor');
  const parts = sameDtypeOperands('Concat', tensors);
  const first = parts[0];
  const at = normalizeAxis('Concat', axis, first.rank);
  for (const part of parts) {
    const mismatch =
      part.rank !== first.rank || part.dims.some((dim, i) => i !== at && !dimsEqual(dim, first.dims[i]));
    if (mismatch) {
      throw new ShapeError(
        `Concat: shapes ${parts.map((p) => formatDims(p.dims)).join(', ')} differ off axis ${at}`,
      );
    }
  }
  if (parts.length === 1) return first;
  const dims = first.dims.map((dim, i) => (i === at ? dimSum(parts.map((p) => p.dims[at])) : dim));
  return first.graph.addNode('Concat', parts, [{ dtype: first.dtype, dims }], { axis: attr.int(at) })[0];
}

export const concatGradient: GradientRule = (context) => {
  const axis = context.node.attributes.axis.value as number;
  const parts = lazy(() => splitLike(outputGradient(context), axis, context.inputs as Tensor[]));
  return context.inputs.map((_, i) => () => parts()[i]);
};

/** Splits along `axis` into the given static sizes, or into `sizes` equal parts when it is a number. */
export function split(x: Tensor, sizes: number | readonly number[], axis: number): Tensor[] {
  const at = normalizeAxis('Split', axis, x.rank);
  const whole = x.dims[at];
  const outDimsWith = (dim: Dim) => x.dims.map((d, i) => (i === at ? dim : d));
  if (typeof sizes === 'number') {
    const part = dimQuotient(whole, sizes);
    if (part === undefined)
      throw new ShapeError(`Split: axis ${at} of ${formatDims(x.dims)} is not divisible by ${sizes}`);
    const outputs = Array.from({ length: sizes }, () => ({ dtype: x.dtype, dims: outDimsWith(part) }));
    return x.graph.addNode('Split', [x], outputs, { axis: attr.int(at), num_outputs: attr.int(sizes) });
  }
  const total = sizes.reduce((sum, size) => sum + size, 0);
  if (total !== whole)
    throw new ShapeError(`Split: sizes [${sizes.join(', ')}] do not add up to axis ${at} of ${x}`);
  const outputs = sizes.map((size) => ({ dtype: x.dtype, dims: outDimsWith(size) }));
  return x.graph.addNode('Split', [x, x.graph.int64s(sizes)], outputs, { axis: attr.int(at) });
}

/** Splits x along `axis` into pieces as long as each of `likes` along that axis (the inverse of concat). */
function splitLike(x: Tensor, axis: number, likes: readonly Tensor[]): Tensor[] {
  const sizes = assembleVector(
    x.graph,
    likes.map((like) =>
      typeof like.dims[axis] === 'number' ? (like.dims[axis] as number) : dimOf(like, axis),
    ),
  );
  const outputs = likes.map((like) => ({
    dtype: x.dtype,
    dims: x.dims.map((d, i) => (i === axis ? like.dims[axis] : d)),
  }));
  return x.graph.addNode('Split', [x, sizes], outputs, { axis: attr.int(axis) });
}

export const splitGradient: GradientRule = (context) => {
  const axis = context.node.attributes.axis.value as number;
  const parts = context.gradOutputs.map((gradient, i) => gradient ?? zerosLike(context.outputs[i]));
  return [() => concat(parts, axis), undefined];
};

// ---- slice ------------------------------------------------------------------------------------------

/**
 * x[starts:ends] along `axes` (default the first starts.length axes), step 1. Negative indices count
 * from the end; END (or any huge end) means to the end.
 */
export function slice(
  x: Tensor,
  starts: readonly number[],
  ends: readonly number[],
  axes: readonly number[] = starts.map((_, i) => i),
): Tensor {
  if (starts.length !== ends.length || starts.length !== axes.length) {
    throw new ShapeError(`Slice: starts, ends and axes differ in length for ${x}`);
  }
  const normalized = axes.map((axis) => normalizeAxis('Slice', axis, x.rank));
  const dims = [...x.dims];
  normalized.forEach((axis, i) => {
    dims[axis] = slicedDim(x.dims[axis], starts[i], Math.min(ends[i], END));
  });
  const inputs = [
    x,
    x.graph.int64s(starts),
    x.graph.int64s(ends.map((end) => Math.min(end, END))),
    x.graph.int64s(normalized),
  ];
  return x.graph.addNode('Slice', inputs, [{ dtype: x.dtype, dims }])[0];
}

function clampIndex(index: number, size: number): number {
  return Math.min(Math.max(index < 0 ? index + size : index, 0), size);
}

/** Length of [start, end) on a dim; named dims give derived names ('seq-1' for both [:-1] and [1:]). */
function slicedDim(dim: Dim, start: number, end: number): Dim {
  if (typeof dim === 'number') return Math.max(0, clampIndex(end, dim) - clampIndex(start, dim));
  if (start === 0 && end === END) return dim;
  if (start === 0 && end < 0) return `${atom(dim)}-${-end}`;
  if (start > 0 && end === END) return `${atom(dim)}-${start}`;
  if (start < 0 && end === END) return -start;
  return `${atom(dim)}[${start}:${end === END ? '' : end}]`;
}

/**
 * Slice's gradient pads g back with zeros; pads on named dims are computed from the runtime shape. Pads
 * cover every axis (no `axes` input): ONNX Runtime 1.30's transpose optimizer mis-permutes Pad's axes.
 */
export const sliceGradient: GradientRule = (context) => {
  const x = context.inputs[0] as Tensor;
  const [starts, ends, axes] = [constantInts(context, 1), constantInts(context, 2), constantInts(context, 3)];
  return [
    () => {
      const before: (number | Tensor)[] = x.dims.map(() => 0);
      const after: (number | Tensor)[] = x.dims.map(() => 0);
      axes.forEach((axis, i) => {
        const dim = x.dims[axis];
        if (typeof dim === 'number') {
          before[axis] = clampIndex(starts[i], dim);
          after[axis] = dim - clampIndex(ends[i], dim);
          return;
        }
        const size = dimOf(x, axis);
        before[axis] = starts[i] >= 0 ? starts[i] : addInt64(size, starts[i]);
        after[axis] = ends[i] >= END ? 0 : ends[i] < 0 ? -ends[i] : addInt64(size, -ends[i]);
      });
      const pads = assembleVector(x.graph, [...before, ...after]);
      return x.graph.addNode('Pad', [outputGradient(context), pads], [{ dtype: x.dtype, dims: x.dims }])[0];
    },
    undefined,
    undefined,
    undefined,
  ];
};

function addInt64(value: Tensor, offset: number): Tensor {
  const sum = value.graph.addNode(
    'Add',
    [value, value.graph.int64s([offset])],
    [{ dtype: 'int64', dims: [1] }],
  );
  return sum[0];
}
