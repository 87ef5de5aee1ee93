// What DPO needs from any causal LM: logits by family, and per-sequence response log-probs (sum, token count,
// mean logit) with prompt and padding masked out; plus a scoring model with the weights frozen inside.
// Legend: B batch, T tokens, V vocab.

import type { HostTensor } from '../dtype.ts';
import * as F from '../functional.ts';
import { Graph, type Tensor } from '../graph.ts';
import { serializeModel } from '../onnx.ts';
import * as op from '../ops/index.ts';
import type { ParameterSet } from '../parameters.ts';
import { gpt2Logits, gpt2WeightShapes, type WeightSource } from './gpt2.ts';
import type { CausalLmSpec } from './hf-config.ts';
import { llamaLogits, llamaWeightShapes } from './llama.ts';

export function weightShapes(spec: CausalLmSpec): Map<string, number[]> {
  return spec.family === 'gpt2' ? gpt2WeightShapes(spec.config) : llamaWeightShapes(spec.config);
}

export function causalLmLogits(
  spec: CausalLmSpec,
  inputIds: Tensor,
  weight: WeightSource,
  attentionMask?: Tensor,
): Tensor {
  return spec.family === 'gpt2'
    ? gpt2Logits(inputIds, weight, spec.config, attentionMask)
    : llamaLogits(inputIds, weight, spec.config, attentionMask);
}

export interface SequenceLogProbs {
  logp: Tensor; // (B,) Σ over response tokens of log p(token | prefix)
  nTokens: Tensor; // (B,) response tokens counted
  meanLogit: Tensor; // (B,) mean logit over response positions and vocabulary (TRL's logits/chosen)
}

/**
 * responseMask (B, T) marks response tokens (EOS included; prompt and padding 0). Token t is scored by the
 * logits at t−1, so the first position never counts.
 */
export function sequenceLogProbs(logits: Tensor, inputIds: Tensor, responseMask: Tensor): SequenceLogProbs {
  const predicting = op.slice(logits, [0], [-1], [1]); // (B, T−1, V)
  const targets = op.slice(inputIds, [1], [op.END], [1]); // (B, T−1)
  const mask = op.cast(op.slice(responseMask, [1], [op.END], [1]), logits.dtype); // (B, T−1)
  const logp = op.reduceSum(op.mul(F.tokenLogProbs(predicting, targets), mask), [1]);
  const nTokens = op.reduceSum(mask, [1]);
  const logitSum = op.reduceSum(op.mul(op.reduceMean(predicting, [2]), mask), [1]);
  return { logp, nTokens, meanLogit: op.div(logitSum, op.where(op.greater(nTokens, 0), nTokens, 1)) };
}

/** Weights as frozen initializers, checked against the architecture's names and shapes. */
export function frozenWeights(graph: Graph, spec: CausalLmSpec, parameters: ParameterSet): WeightSource {
  const expected = weightShapes(spec);
  return (name, dims) => {
    const value = parameters.get(name);
    if (!value) throw new Error(`weight ${name} is missing`);
    if (value.dims.join() !== dims.join() || expected.get(name)?.join() !== dims.join()) {
      throw new Error(`weight ${name} has shape [${value.dims}], expected [${dims}]`);
    }
    return graph.memo(`weight:${name}`, () => graph.initializer(name, value, { frozen: true }));
  };
}

/**
 * Inference model: inputs input_ids, attention_mask, response_mask (B, T) int64; outputs logp, n_tokens,
 * mean_logit (B,) and, with `withLogits`, logits (B, T, V).
 */
export function buildScoringModel(
  spec: CausalLmSpec,
  parameters: ParameterSet,
  options: { withLogits?: boolean } = {},
): Uint8Array {
  const graph = new Graph('score');
  const inputIds = graph.input('input_ids', 'int64', ['batch', 'seq']);
  const attentionMask = graph.input('attention_mask', 'int64', ['batch', 'seq']);
  const responseMask = graph.input('response_mask', 'int64', ['batch', 'seq']);
  const logits = causalLmLogits(spec, inputIds, frozenWeights(graph, spec, parameters), attentionMask);
  const scored = sequenceLogProbs(logits, inputIds, responseMask);
  graph.output('logp', scored.logp);
  graph.output('n_tokens', scored.nTokens);
  graph.output('mean_logit', scored.meanLogit);
  if (options.withLogits) graph.output('logits', logits);
  return serializeModel(graph);
}

export type ScoringFeeds = Record<'input_ids' | 'attention_mask' | 'response_mask', HostTensor<'int64'>>;
