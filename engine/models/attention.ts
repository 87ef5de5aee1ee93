// Attention shared by the model files: masks for full sequences and for decoding with a key/value cache,
// and scaled dot-product attention that appends the new keys/values to the cache (grouped-query aware).
// Legend: B batch, H query heads, K kv heads, S new tokens, P cached tokens, L = P + S keys, E head width.

import * as F from '../functional.ts';
import type { Tensor } from '../graph.ts';
import * as op from '../ops/index.ts';

/** Keys and values of the tokens seen so far, per layer: each (B, K, P, E). */
export interface LayerCache {
  key: Tensor;
  value: Tensor;
}

/** What a model's forward takes beyond input_ids and its weights. */
export interface ForwardOptions {
  attentionMask?: Tensor; // (B, L) 1 = token, over cached and new tokens
  positionIds?: Tensor; // (B or 1, T); default 0…T−1
  past?: readonly LayerCache[]; // one per layer, for decoding with a key/value cache
}

/**
 * bool (B or 1, 1, S, L): which keys each new token may attend to. Without a cache L = S (causal); with one,
 * attention_mask covers all L = P + S tokens and new token i sits at position P + i. Padded keys are masked.
 */
export function attentionAllowed(
  inputIds: Tensor,
  attentionMask: Tensor | undefined,
  cached: boolean,
): Tensor {
  if (!cached) {
    const causal = op.unsqueeze(F.causalMask(inputIds, 1), [0, 1]); // (1, 1, S, S)
    return attentionMask ? op.logicalAnd(causal, F.paddingMask(attentionMask)) : causal;
  }
  if (!attentionMask)
    throw new op.ShapeError('attention with a key/value cache needs the attention_mask of all tokens');
  const keys = op.arange(attentionMask, 1); // (L,)
  const offset = op.sub(op.dimOf(attentionMask, 1), op.dimOf(inputIds, 1)); // (1,) = P
  const queries = op.add(op.arange(inputIds, 1), offset); // (S,)
  const causal = op.lessOrEqual(op.unsqueeze(keys, 0), op.unsqueeze(queries, 1)); // (S, L)
  return op.logicalAnd(op.unsqueeze(causal, [0, 1]), F.paddingMask(attentionMask)); // (B, 1, S, L)
}

/** softmax(q·kᵀ/√E masked)·v with q (B, H, S, E), k and v (B, K, S, E); returns y (B, H, S, E) and the cache. */
export function attend(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  allowed: Tensor,
  past?: LayerCache,
): { y: Tensor; present: LayerCache } {
  const keys = past ? op.concat([past.key, k], 2) : k; // (B, K, L, E)
  const values = past ? op.concat([past.value, v], 2) : v;
  const [H, K, E] = [q.dims[1] as number, k.dims[1] as number, q.dims[3] as number];
  // Each kv head serves H/K query heads: (B, K, L, E) → (B, K, H/K, L, E) → (B, H, L, E).
  const repeat = (t: Tensor) =>
    K === H
      ? t
      : op.reshape(op.expand(op.unsqueeze(t, 2), [t.dims[0], K, H / K, t.dims[2], E]), [
          t.dims[0],
          H,
          t.dims[2],
          E,
        ]);
  const scores = op.div(op.matmul(q, op.transposeLastTwo(repeat(keys))), Math.sqrt(E)); // (B, H, S, L)
  const y = op.matmul(op.softmax(F.maskScores(scores, allowed)), repeat(values)); // (B, H, S, E)
  return { y, present: { key: keys, value: values } };
}
