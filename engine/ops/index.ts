// The ops a model is written with: `import * as op from './ops/index.ts'; op.add(x, op.matmul(h, w))`.
// Each function checks dtypes and shapes at build time and appends one node (or none when it is a no-op).

export { stopGradient } from '../graph.ts';
export type { TensorLike } from './core.ts';
export { type Dim, normalizeAxis, ShapeError } from './dims.ts';
export {
  add,
  cast,
  cos,
  div,
  equal,
  erf,
  exp,
  greater,
  greaterOrEqual,
  less,
  lessOrEqual,
  log,
  logicalAnd,
  logicalNot,
  logicalOr,
  mul,
  neg,
  pow,
  reciprocal,
  relu,
  sigmoid,
  sin,
  sqrt,
  sub,
  tanh,
  where,
} from './elementwise.ts';
export { gather, gatherElements, scatterElements, scatterND } from './indexing.ts';
export { matmul, transposeLastTwo } from './matmul.ts';
export { type LayerNormOptions, layerNorm, logSoftmax, softmax } from './nn.ts';
export { type Axes, reduceMax, reduceMean, reduceSum, sumToShape } from './reduce.ts';
export {
  arange,
  concat,
  dimOf,
  END,
  expand,
  expandAs,
  reshape,
  reshapeLike,
  shapeOf,
  slice,
  split,
  squeeze,
  transpose,
  unsqueeze,
  zerosLike,
} from './shape.ts';
