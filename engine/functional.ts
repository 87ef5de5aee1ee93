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
 * Rotary position embedding, rotate-half form (GPT-NeoX / Llama), for x [B, H, T, E] with E static and even:
 * x·cos(θ) + rotate_half(x)·sin(θ), θ[t, i] = t · f[i]. The frequencies f default to base^(−2i/E); models
 * with rope scaling (llama3) pass their own E/2 values. Positions come from T at run time; the cos/sin tables
 * are built once per graph for each (T, frequencies, dtype) and shared by every layer.
 */
export function rotaryEmbedding(x: Tensor, base = 10000, frequencies?: Float64Array): Tensor {
  const width = x.dims[x.rank - 1];
  if (typeof width !== 'number' || width % 2 !== 0) {
    throw new op.ShapeError(`rotaryEmbedding: head width of ${x} must be a static even number`);
  }
  const half = width / 2;
  const inverse = frequencies ?? new Float64Array(half).map((_, i) => base ** ((-2 * i) / width));
  if (inverse.length !== half) {
    throw new op.ShapeError(
      `rotaryEmbedding: ${inverse.length} frequencies for head width ${width} (need ${half})`,
    );
  }
  const key = `rotary:${canonicalDim(x.dims[x.rank - 2])}:${inverse.join(',')}:${x.dtype}`;
  const [cos, sin] = x.graph.memo(key, () => {
    const inverseFrequency = x.graph.constant(hostFloats(x.dtype, [half], inverse)); // [E/2]
    const positions = op.unsqueeze(op.cast(op.arange(x, -2), x.dtype), 1); // [T, 1]
    const angles = op.mul(positions, inverseFrequency); // [T, E/2]
    const doubled = op.concat([angles, angles], -1); // [T, E]
    return [op.cos(doubled), op.sin(doubled)];
  });
  const firstHalf = op.slice(x, [0], [half], [-1]);
  const secondHalf = op.slice(x, [half], [op.END], [-1]);
  const rotated = op.concat([op.neg(secondHalf), firstHalf], -1);
  return op.add(op.mul(x, cos), op.mul(rotated, sin));
}

function hostFloats(dtype: DType, dims: number[], values: Float64Array): HostTensor {
  if (dtype === 'float64') return hostTensor(dtype, dims, values);
  if (dtype === 'float32') return hostTensor(dtype, dims, Float32Array.from(values));
  throw new op.ShapeError(`rotaryEmbedding: dtype ${dtype} is not supported (float32 or float64)`);
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
