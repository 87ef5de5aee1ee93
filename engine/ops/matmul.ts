// Batched matrix product with numpy batch broadcasting, and its gradient as MatMuls of transposes
// (ONNX Runtime fuses Transpose+MatMul). Legend: … batch dims, M rows, K inner, N columns.

import type { Tensor } from '../graph.ts';
import { type GradientRule, outputGradient, requireFloat, sameDtypeOperands } from './core.ts';
import { broadcastShapes, dimsEqual, formatDims, ShapeError } from './dims.ts';
import { sumToShape } from './reduce.ts';
import { reshape, transpose } from './shape.ts';

/** a [..., M, K] @ b [..., K, N] → [..., M, N]; both operands need rank ≥ 2. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  const [x, y] = sameDtypeOperands('MatMul', [a, b]);
  requireFloat('MatMul', x);
  const shapes = `${formatDims(x.dims)} by ${formatDims(y.dims)}`;
  if (x.rank < 2 || y.rank < 2) {
    throw new ShapeError(`MatMul: cannot multiply ${shapes}: operands need rank >= 2 (unsqueeze vectors)`);
  }
  const inner = [x.dims[x.rank - 1], y.dims[y.rank - 2]];
  if (!dimsEqual(inner[0], inner[1])) {
    throw new ShapeError(`MatMul: cannot multiply ${shapes}: inner dims ${inner[0]} vs ${inner[1]}`);
  }
  const batch = broadcastShapes(`MatMul: batch dims of ${shapes}`, [
    x.dims.slice(0, -2),
    y.dims.slice(0, -2),
  ]);
  const dims = [...batch, x.dims[x.rank - 2], y.dims[y.rank - 1]];
  return x.graph.addNode('MatMul', [x, y], [{ dtype: x.dtype, dims }])[0];
}

/** Swaps the last two axes: [..., M, K] → [..., K, M]. */
export function transposeLastTwo(x: Tensor): Tensor {
  const perm = [...x.dims.keys()];
  perm.splice(-2, 2, x.rank - 1, x.rank - 2);
  return transpose(x, perm);
}

/**
 * dA = g @ Bᵀ, dB = Aᵀ @ g, each summed over broadcast batch dims. When B is a plain [K, N] weight and A
 * is batched, A and g are folded to rows first: one [K, ·] @ [·, N] product instead of a batched product
 * followed by a sum over batches.
 */
export const matmulGradient: GradientRule = (context) => {
  const [a, b] = context.inputs as Tensor[];
  const g = outputGradient(context);
  const weightGradient = () => {
    if (b.rank === 2 && a.rank > 2) {
      const rowsA = reshape(a, [-1, a.dims[a.rank - 1]]); // [·, K]
      const rowsG = reshape(g, [-1, g.dims[g.rank - 1]]); // [·, N]
      return matmul(transposeLastTwo(rowsA), rowsG);
    }
    return sumToShape(matmul(transposeLastTwo(a), g), b.dims);
  };
  return [() => sumToShape(matmul(g, transposeLastTwo(b)), a.dims), weightGradient];
};
