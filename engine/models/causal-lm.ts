// What DPO needs from any causal LM: logits by family, and per-sequence response log-probs (sum, token count,
// mean logit) with prompt and padding masked out; plus a scoring model with the weights frozen inside.
// Legend: B batch, T tokens, V vocab.

import { type DType, type HostTensor, hostTensor } from '../dtype.ts';
import * as F from '../functional.ts';
import { attr, Graph, type Tensor } from '../graph.ts';
import { serializeModel } from '../onnx.ts';
import { dimsEqual } from '../ops/dims.ts';
import * as op from '../ops/index.ts';
import type { ParameterSet } from '../parameters.ts';
import { gpt2Logits, gpt2WeightShapes, type WeightSource } from './gpt2.ts';
import type { CausalLmSpec } from './hf-config.ts';
import { llamaLogits, llamaWeightShapes } from './llama.ts';

export type { WeightSource } from './gpt2.ts';

export function weightShapes(spec: CausalLmSpec): Map<string, number[]> {
  return spec.family === 'gpt2' ? gpt2WeightShapes(spec.config) : llamaWeightShapes(spec.config);
}

/**
 * Position ids (B, T) int64 from an attention mask (B, T): the number of real tokens before each position,
 * i.e. cumsum(mask) − 1 at real tokens (what transformers' generate passes). A sequence thus gets positions
 * 0…n−1 whatever padding surrounds it, so its log-prob does not depend on its batch. Pads get 0 (left) or n
 * (right); no real token attends to them. Integer-valued: no gradient flows here.
 */
export function positionIdsFromMask(attentionMask: Tensor): Tensor {
  const mask = attentionMask.dtype === 'int64' ? attentionMask : op.cast(attentionMask, 'int64');
  const graph = mask.graph;
  const axis = graph.scalar(1, 'int64');
  return graph.memo(`positionIdsFromMask:${mask.id}`, () => {
    // ONNX CumSum with exclusive=1 sums the entries strictly before each position.
    const spec = { dtype: 'int64' as const, dims: mask.dims };
    return graph.addNode('CumSum', [mask, axis], [spec], { exclusive: attr.int(1) })[0];
  });
}

/**
 * Logits (B, T, V) for input_ids (B, T) int64. With attention_mask (B, T) (1 = token; right, left or both
 * sides padded) padded keys are masked and positions come from the mask (positionIdsFromMask) unless
 * position_ids are given; without a mask positions are 0…T−1.
 */
export function causalLmLogits(
  spec: CausalLmSpec,
  inputIds: Tensor,
  weight: WeightSource,
  attentionMask?: Tensor,
  positionIds?: Tensor,
): Tensor {
  requireTokenMatrix('input_ids', inputIds, ['int64']);
  if (attentionMask) requireTokenMatrix('attention_mask', attentionMask, ['int64', 'bool'], inputIds);
  if (positionIds)
    requireTokenMatrix('position_ids', positionIds, ['int64'], inputIds, { batchMayBeOne: true });
  const positions = positionIds ?? (attentionMask ? positionIdsFromMask(attentionMask) : undefined);
  return spec.family === 'gpt2'
    ? gpt2Logits(inputIds, weight, spec.config, attentionMask, positions)
    : llamaLogits(inputIds, weight, spec.config, attentionMask, positions);
}

export interface SequenceLogProbs {
  logp: Tensor; // (B,) Σ over response tokens of log p(token | prefix)
  nTokens: Tensor; // (B,) response tokens counted
  meanLogit: Tensor; // (B,) mean logit over response positions and vocabulary; 0 without response tokens
}

/**
 * responseMask (B, T) marks response tokens (EOS included; prompt and padding 0). Token t is scored by the
 * logits at t−1, so the first position never counts. TRL's batch `logits/chosen` (mean over every response
 * token of the batch) is Σ meanLogit·nTokens / Σ nTokens.
 */
export function sequenceLogProbs(logits: Tensor, inputIds: Tensor, responseMask: Tensor): SequenceLogProbs {
  if (logits.rank !== 3) throw new op.ShapeError(`sequenceLogProbs: logits must be (B, T, V), got ${logits}`);
  requireTokenMatrix('input_ids', inputIds, ['int64'], logits);
  requireTokenMatrix('response_mask', responseMask, ['int64', 'bool', 'float32', 'float64'], logits);
  const predicting = op.slice(logits, [0], [-1], [1]); // (B, T−1, V)
  const targets = op.slice(inputIds, [1], [op.END], [1]); // (B, T−1)
  const mask = op.cast(op.slice(responseMask, [1], [op.END], [1]), logits.dtype); // (B, T−1)
  const logp = op.reduceSum(op.mul(F.tokenLogProbs(predicting, targets), mask), [1]);
  const nTokens = op.reduceSum(mask, [1]);
  const logitSum = op.reduceSum(op.mul(op.reduceMean(predicting, [2]), mask), [1]);
  return { logp, nTokens, meanLogit: op.div(logitSum, op.where(op.greater(nTokens, 0), nTokens, 1)) };
}

export interface ModelWeights {
  weight: WeightSource;
  /** Graph inputs made for trainable weights, in first-use order (a LossProgram's `trainable`). */
  trainable: Tensor[];
}

/**
 * Where each weight comes from: names in `trainable` become graph inputs of `dtype` (fed each step, e.g. by
 * the trainer), every other weight a frozen initializer holding its value from `parameters` (inside the
 * session, constant to autodiff). `dtype` defaults to the parameters' own; every weight must have it.
 * Requested names and shapes are checked against the architecture.
 */
export function modelWeights(
  graph: Graph,
  spec: CausalLmSpec,
  options: { parameters?: ParameterSet; trainable?: ReadonlySet<string>; dtype?: 'float32' | 'float64' } = {},
): ModelWeights {
  const expected = weightShapes(spec);
  const dtype = options.dtype ?? options.parameters?.values().next().value?.dtype ?? 'float32';
  const trainable: Tensor[] = [];
  const weight: WeightSource = (name, dims) => {
    const shape = expected.get(name);
    if (!shape) throw new Error(`weight ${name} is not a ${spec.architecture} weight`);
    if (shape.join() !== dims.join()) {
      throw new op.ShapeError(
        `weight ${name} requested as [${dims}], but ${spec.architecture} has [${shape}]`,
      );
    }
    return graph.memo(`weight:${name}`, () => {
      if (options.trainable?.has(name)) {
        const input = graph.input(name, dtype, dims);
        trainable.push(input);
        return input;
      }
      const value = options.parameters?.get(name);
      if (!value) throw new Error(`weight ${name} is frozen but missing from the parameters`);
      if (value.dims.join() !== dims.join() || value.dtype !== dtype) {
        throw new op.ShapeError(
          `weight ${name} is ${value.dtype} [${value.dims}], expected ${dtype} [${dims}]`,
        );
      }
      return graph.initializer(name, value, { frozen: true });
    });
  };
  return { weight, trainable };
}

/** Every weight a frozen initializer (reference model, scoring). */
export function frozenWeights(graph: Graph, spec: CausalLmSpec, parameters: ParameterSet): WeightSource {
  return modelWeights(graph, spec, { parameters }).weight;
}

/**
 * Inference model: inputs input_ids, attention_mask, response_mask (B, T) int64; outputs logp, n_tokens,
 * mean_logit (B,) and, with `withLogits`, logits (B, T, V). Positions come from attention_mask.
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

/**
 * (prompt, response) token lists as right-padded (B, T) feeds: input_ids (pads = padTokenId), attention_mask (1 on
 * tokens) and response_mask (1 on response tokens). T is the longest sequence unless `tokens` is given.
 */
export function rightPaddedFeeds(
  sequences: readonly (readonly [prompt: readonly number[], response: readonly number[]])[],
  padTokenId: number,
  tokens = Math.max(...sequences.map(([prompt, response]) => prompt.length + response.length)),
): ScoringFeeds {
  const rows = sequences.length;
  const ids = new BigInt64Array(rows * tokens).fill(BigInt(padTokenId));
  const attention = new BigInt64Array(rows * tokens);
  const response = new BigInt64Array(rows * tokens);
  sequences.forEach(([promptIds, responseIds], row) => {
    const offset = row * tokens;
    [...promptIds, ...responseIds].forEach((id, t) => {
      ids[offset + t] = BigInt(id);
      attention[offset + t] = 1n;
      if (t >= promptIds.length) response[offset + t] = 1n;
    });
  });
  const dims = [rows, tokens];
  return {
    input_ids: hostTensor('int64', dims, ids),
    attention_mask: hostTensor('int64', dims, attention),
    response_mask: hostTensor('int64', dims, response),
  };
}

/** Build-time check of a (B, T) token-aligned tensor: rank, dtype, and dims equal to `like`'s first two. */
function requireTokenMatrix(
  field: string,
  tensor: Tensor,
  dtypes: readonly DType[],
  like?: Tensor,
  options: { batchMayBeOne?: boolean } = {},
): void {
  const problem =
    tensor.rank !== 2
      ? 'must be (B, T)'
      : !dtypes.includes(tensor.dtype)
        ? `must be ${dtypes.join(' or ')}`
        : like &&
            !(
              (dimsEqual(tensor.dims[0], like.dims[0]) || (options.batchMayBeOne && tensor.dims[0] === 1)) &&
              dimsEqual(tensor.dims[1], like.dims[1])
            )
          ? `must match the (B, T) of ${like}`
          : undefined;
  if (problem) throw new op.ShapeError(`${field} ${problem}, got ${tensor}`);
}
