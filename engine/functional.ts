// Composites built only from primitive ops (so they need no gradient rules of their own): stable
// softplus / log-sigmoid, activations, RMSNorm, rotary embeddings, attention masks, token log-probs.
// Legend: B batch, T tokens, H heads, E head width, V vocab.

import { type DType, type HostTensor, hostTensor } from './dtype.ts';
import type { Tensor } from './graph.ts';
import { canonicalDim } from './ops/dims.ts';
import * as op from './ops/index.ts';

/**
 * log(1 + eˣ) without overflow: relu(x) + log(1 + e^(−|x|)). −|x| is written as where(x > 0, −x, x) so the
 * gradient at 0 is σ(0) = ½ (DPO starts with every margin at exactly 0). ONNX Runtime's own float64
 * Softplus returns Infinity for x ≳ 710, hence the composite.
 */
export function softplus(x: Tensor): Tensor {
  const minusAbs = op.where(op.greater(x, 0), op.neg(x), x);
  return op.add(op.relu(x), op.log(op.add(op.exp(minusAbs), 1)));
}

/** log σ(x) = −softplus(−x), stable for large |x|. */
export function logSigmoid(x: Tensor): Tensor {
  return op.neg(softplus(op.neg(x)));
}

/** x · σ(x). */
export function silu(x: Tensor): Tensor {
  return op.mul(x, op.sigmoid(x));
}

/** Exact GELU, x · Φ(x) = ½x(1 + erf(x/√2)); written in the shape ONNX Runtime fuses into one kernel. */
export function gelu(x: Tensor): Tensor {
  return op.mul(op.mul(x, op.add(op.erf(op.div(x, Math.SQRT2)), 1)), 0.5);
}

/** GELU's tanh approximation (GPT-2's): ½x(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function geluTanh(x: Tensor): Tensor {
  const inner = op.mul(op.add(x, op.mul(op.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return op.mul(op.mul(x, op.add(op.tanh(inner), 1)), 0.5);
}

/** x / √(mean(x²) + ε) · weight over the last axis (weight [D]). */
export function rmsNorm(x: Tensor, weight: Tensor, epsilon = 1e-6): Tensor {
  const rms = op.sqrt(op.add(op.reduceMean(op.pow(x, 2), -1, true), epsilon));
  return op.mul(op.div(x, rms), weight);
}

/**
 * cos and sin of θ[b, t, i] = position[b, t] · f[i] for positions (B or 1, T) int64 and E/2 frequencies f,
 * each (B or 1, 1, T, E) with the angles written twice (rotate-half layout). Built once per positions tensor
 * and shared by every layer that rotates with them.
 */
export function rotaryTables(positions: Tensor, frequencies: Float64Array, dtype: DType): [Tensor, Tensor] {
  const graph = positions.graph;
  return graph.memo(`rotary:${positions.id}:${frequencies.join(',')}:${dtype}`, () => {
    const f = graph.constant(hostFloats(dtype, [frequencies.length], frequencies)); // (E/2,)
    const angles = op.mul(op.unsqueeze(op.cast(positions, dtype), -1), f); // (B, T, E/2)
    const doubled = op.concat([angles, angles], -1); // (B, T, E)
    return [op.unsqueeze(op.cos(doubled), 1), op.unsqueeze(op.sin(doubled), 1)]; // (B, 1, T, E)
  });
}

/** x·cos + rotate_half(x)·sin for x (B, n, T, E), rotate_half(x) = [−x₂, x₁] over the halves of E. */
export function applyRotary(x: Tensor, [cos, sin]: [Tensor, Tensor]): Tensor {
  const width = x.dims[x.rank - 1];
  if (typeof width !== 'number' || width % 2 !== 0 || cos.dims[cos.rank - 1] !== width) {
    throw new op.ShapeError(
      `rotary embedding: head width of ${x} must be static, even and match the tables ${cos}`,
    );
  }
  const half = width / 2;
  const rotated = op.concat(
    [op.neg(op.slice(x, [half], [op.END], [-1])), op.slice(x, [0], [half], [-1])],
    -1,
  );
  return op.add(op.mul(x, cos), op.mul(rotated, sin));
}

/** Rotary position embedding at positions 0…T−1 with frequencies base^(−2i/E), for x (B, H, T, E). */
export function rotaryEmbedding(x: Tensor, base = 10000): Tensor {
  const width = x.dims[x.rank - 1];
  if (typeof width !== 'number' || width % 2 !== 0) {
    throw new op.ShapeError(`rotaryEmbedding: head width of ${x} must be a static even number`);
  }
  const frequencies = new Float64Array(width / 2).map((_, i) => base ** ((-2 * i) / width));
  // One positions tensor per sequence length, so every layer shares the same tables.
  const positions = x.graph.memo(`positions:${canonicalDim(x.dims[x.rank - 2])}`, () =>
    op.unsqueeze(op.arange(x, -2), 0),
  ); // (1, T)
  return applyRotary(x, rotaryTables(positions, frequencies, x.dtype));
}

function hostFloats(dtype: DType, dims: number[], values: Float64Array): HostTensor {
  if (dtype === 'float64') return hostTensor(dtype, dims, values);
  if (dtype === 'float32') return hostTensor(dtype, dims, Float32Array.from(values));
  throw new op.ShapeError(`rotary embedding: dtype ${dtype} is not supported (float32 or float64)`);
}

/** bool [T, T], true where key position ≤ query position; T is `like`'s size along `axis`. Built once per T. */
export function causalMask(like: Tensor, axis: number): Tensor {
  const length = like.dims[op.normalizeAxis('causalMask', axis, like.rank)];
  return like.graph.memo(`causalMask:${canonicalDim(length)}`, () => {
    const positions = op.arange(like, axis); // [T]
    return op.lessOrEqual(op.unsqueeze(positions, 0), op.unsqueeze(positions, 1)); // keys [1, T] ≤ queries [T, 1]
  });
}

/** bool [B, 1, 1, T] from an attention mask [B, T] (nonzero or true = a real token), for [B, H, T, T] scores. */
export function paddingMask(attentionMask: Tensor): Tensor {
  const keep = attentionMask.dtype === 'bool' ? attentionMask : op.greater(attentionMask, 0);
  return op.unsqueeze(keep, [1, 2]);
}

/** The score given to blocked positions: finite (not −∞) so a row with nothing allowed is not NaN. */
function blockedScore(dtype: DType): number {
  return dtype === 'float16' ? -3e4 : -1e9;
}

/**
 * Attention scores [B, H, T, T] where `allowed` (e.g. [B, 1, T, T]), a large negative number elsewhere.
 * Blocked scores become exactly that number, so a row with nothing allowed (left padding) is an exact
 * uniform softmax with zero gradient, instead of the rounding noise of adding −1e9 to a score.
 */
export function maskScores(scores: Tensor, allowed: Tensor): Tensor {
  return op.where(allowed, scores, blockedScore(scores.dtype));
}

/**
 * 0 where `allowed`, a large negative number elsewhere, to add to scores. Prefer maskScores when some
 * row may have nothing allowed: there the sum is score − 1e9, which keeps only ~1e-7 of the score.
 */
export function additiveMask(allowed: Tensor, dtype: DType): Tensor {
  return op.where(allowed, allowed.graph.scalar(0, dtype), blockedScore(dtype));
}

/** log p(target) per position: logits [..., V], targets [...] int64 → [...]. */
export function tokenLogProbs(logits: Tensor, targets: Tensor): Tensor {
  const logProbs = op.logSoftmax(logits, -1);
  return op.squeeze(op.gatherElements(logProbs, op.unsqueeze(targets, -1), -1), -1);
}
