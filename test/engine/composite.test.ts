// Whole-model gradient checks in float64: a 2-layer MLP with a cross-entropy loss, and a causal
// self-attention block (LayerNorm, RoPE, causal + padding masks, residual, RMSNorm) on named dims.
// Legend: B batch, T tokens, D width, H heads, E head width.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostTensor } from '../../engine/dtype.ts';
import * as F from '../../engine/functional.ts';
import * as op from '../../engine/ops/index.ts';
import { gradcheck } from './gradcheck-helpers.ts';

const TOLERANCE = 1e-6;

test('2-layer MLP with cross-entropy: gradients of all weights and the input', async (t) => {
  const labels = hostTensor('int64', [4], BigInt64Array.from([2n, 0n, 2n, 1n]));
  const result = await gradcheck({
    dtype: 'float64',
    inputs: [
      { name: 'x', dims: [4, 6] },
      { name: 'w1', dims: [6, 8] },
      { name: 'b1', dims: [8] },
      { name: 'w2', dims: [8, 3] },
      { name: 'b2', dims: [3] },
    ],
    fixedInputs: [{ name: 'labels', declared: [4], value: labels }],
    build: ([x, w1, b1, w2, b2], _graph, [targets]) => {
      const hidden = F.geluTanh(op.add(op.matmul(x, w1), b1)); // [B, 8]
      const logits = op.add(op.matmul(hidden, w2), b2); // [B, 3]
      return op.neg(op.reduceMean(F.tokenLogProbs(logits, op.cast(targets, 'int64'))));
    },
  });
  t.diagnostic(`relative errors ${result.relativeErrors.map((e) => e.toExponential(2)).join(', ')}`);
  assert.ok(result.maxRelativeError < TOLERANCE, `max relative error ${result.maxRelativeError}`);
});

/**
 * A pre-LN causal self-attention block with RoPE and a residual, then RMSNorm: x [B, T, D] → [B, T, D],
 * with B and T named so masks and shapes come from the runtime shape.
 */
async function checkAttentionBlock(maskValues: bigint[], masking: 'where' | 'additive') {
  const [B, T, D, H, E] = [2, 4, 8, 2, 4];
  return gradcheck({
    dtype: 'float64',
    inputs: [
      { name: 'x', dims: [B, T, D], declared: ['batch', 'seq', D] },
      { name: 'ln_scale', dims: [D] },
      { name: 'ln_bias', dims: [D] },
      { name: 'w_qkv', dims: [D, 3 * D] },
      { name: 'w_out', dims: [D, D] },
      { name: 'rms_weight', dims: [D] },
    ],
    fixedInputs: [
      {
        name: 'attention_mask',
        declared: ['batch', 'seq'],
        value: hostTensor('int64', [B, T], BigInt64Array.from(maskValues)),
      },
    ],
    outputDims: [[B, T, D]],
    build: ([x, lnScale, lnBias, wQkv, wOut, rmsWeight], _graph, [mask]) => {
      const normed = op.layerNorm(x, lnScale, lnBias); // [B, T, D]
      const heads = op
        .split(op.matmul(normed, wQkv), 3, -1) // 3 × [B, T, D]
        .map((part) => op.transpose(op.reshape(part, ['batch', 'seq', H, E]), [0, 2, 1, 3])); // [B, H, T, E]
      const [q, k, v] = [F.rotaryEmbedding(heads[0]), F.rotaryEmbedding(heads[1]), heads[2]];
      const scores = op.mul(op.matmul(q, op.transposeLastTwo(k)), 1 / Math.sqrt(E)); // [B, H, T, T]
      const allowed = op.logicalAnd(F.causalMask(x, 1), F.paddingMask(mask)); // [B, 1, T, T]
      const masked =
        masking === 'where'
          ? F.maskScores(scores, allowed)
          : op.add(scores, F.additiveMask(allowed, 'float64'));
      const probs = op.softmax(masked, -1);
      const attended = op.reshape(op.transpose(op.matmul(probs, v), [0, 2, 1, 3]), ['batch', 'seq', D]); // [B, T, D]
      return F.rmsNorm(op.add(x, op.matmul(attended, wOut)), rmsWeight);
    },
  });
}

test('attention block, maskScores, right and left padding: gradients of all weights and the input', async (t) => {
  // Sample 1 is left-padded: its first query has no allowed key at all.
  const result = await checkAttentionBlock([1n, 1n, 1n, 0n, 0n, 1n, 1n, 1n], 'where');
  t.diagnostic(`relative errors ${result.relativeErrors.map((e) => e.toExponential(2)).join(', ')}`);
  assert.ok(result.maxRelativeError < TOLERANCE, `max relative error ${result.maxRelativeError}`);
});

test('attention block, additive mask, right padding: gradients of all weights and the input', async (t) => {
  const result = await checkAttentionBlock([1n, 1n, 1n, 0n, 1n, 1n, 0n, 0n], 'additive');
  t.diagnostic(`relative errors ${result.relativeErrors.map((e) => e.toExponential(2)).join(', ')}`);
  assert.ok(result.maxRelativeError < TOLERANCE, `max relative error ${result.maxRelativeError}`);
});
