// Training through the model graphs: float64 gradient checks of tiny GPT-2, Llama (GQA, llama3 rope) and
// Qwen2-style (q/k/v biases, tied head) models end to end — every weight, a few elements each, through the
// sequence log-probs with right and left padding — and the build-time errors for badly shaped inputs.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type HostTensor, hostTensor } from '../../engine/dtype.ts';
import { Graph, type Tensor } from '../../engine/graph.ts';
import {
  causalLmLogits,
  frozenWeights,
  modelWeights,
  sequenceLogProbs,
  type WeightSource,
  weightShapes,
} from '../../engine/models/causal-lm.ts';
import type { CausalLmSpec } from '../../engine/models/hf-config.ts';
import * as op from '../../engine/ops/index.ts';
import type { ParameterSet } from '../../engine/parameters.ts';
import { gradcheck, normals, seededRandom } from '../engine/gradcheck-helpers.ts';

const VOCAB = 13;
const common = { eosTokenIds: [2], bosTokenId: 1 };
const llamaConfig = {
  vocab_size: VOCAB,
  hidden_size: 8,
  intermediate_size: 12,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1, // each kv head serves two query heads
  head_dim: 4,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  // wavelengths 2π (between 16/4 and 16/1: smoothed) and 200π (above 16: divided by factor)
  rope_scaling: { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
  tie_word_embeddings: false,
  qkv_bias: false,
};
const specs: CausalLmSpec[] = [
  {
    ...common,
    architecture: 'GPT2LMHeadModel',
    family: 'gpt2',
    config: { vocab_size: VOCAB, n_positions: 8, n_embd: 8, n_layer: 2, n_head: 2, layer_norm_epsilon: 1e-5 },
  },
  { ...common, architecture: 'LlamaForCausalLM', family: 'llama', config: llamaConfig },
  {
    ...common,
    architecture: 'Qwen2ForCausalLM',
    family: 'llama',
    config: { ...llamaConfig, rope_scaling: undefined, tie_word_embeddings: true, qkv_bias: true },
  },
];

/** Random float64 weights: N(0, 0.3²), norm scales 1 + N(0, 0.1²). */
function randomParameters(spec: CausalLmSpec, seed: number): ParameterSet {
  const random = seededRandom(seed);
  const parameters: ParameterSet = new Map();
  for (const [name, dims] of weightShapes(spec)) {
    const count = dims.reduce((a, b) => a * b, 1);
    const isNormScale = /(ln_\d|ln_f|norm)\.weight$/.test(name);
    const values = normals(random, count).map((value) => (isNormScale ? 1 + 0.1 * value : 0.3 * value));
    parameters.set(name, hostTensor('float64', dims, values));
  }
  return parameters;
}

// Row 0 right-padded, row 1 left-padded, row 2 full; prompt 2 tokens, then the response (EOS = 2 last).
const ROWS = 3;
const TOKENS = 6;
const batch = {
  input_ids: [5, 7, 9, 2, 0, 0, 0, 0, 4, 11, 3, 2, 1, 6, 8, 10, 12, 2],
  attention_mask: [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
  response_mask: [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1],
};
const int64Matrix = (values: number[]): HostTensor =>
  hostTensor('int64', [ROWS, TOKENS], BigInt64Array.from(values, BigInt));

const ELEMENTS_PER_WEIGHT = 3;

describe('gradients through the full model graphs match finite differences (float64)', () => {
  for (const spec of specs) {
    it(`${spec.architecture}: every weight, ${ELEMENTS_PER_WEIGHT} elements each`, async (t) => {
      const parameters = randomParameters(spec, 7);
      const random = seededRandom(11);
      // For each weight a few flat indices; the checked input is a delta added at those elements.
      const picks = [...weightShapes(spec)].map(([name, dims]) => {
        const count = dims.reduce((a, b) => a * b, 1);
        const indices = Array.from({ length: ELEMENTS_PER_WEIGHT }, () => Math.floor(random() * count));
        return { name, dims, count, indices };
      });
      const result = await gradcheck({
        dtype: 'float64',
        inputs: picks.map(({ name }) => ({
          name: `delta:${name}`,
          dims: [ELEMENTS_PER_WEIGHT],
          values: new Array(ELEMENTS_PER_WEIGHT).fill(0),
        })),
        fixedInputs: Object.entries(batch).map(([name, values]) => ({
          name,
          declared: ['batch', 'seq'],
          value: int64Matrix(values),
        })),
        outputDims: [[ROWS], [ROWS], [ROWS, TOKENS, VOCAB]],
        build: (deltas, graph, [inputIds, attentionMask, responseMask]) => {
          const frozen = frozenWeights(graph, spec, parameters);
          const weight: WeightSource = (name, dims) => {
            const at = picks.findIndex((pick) => pick.name === name);
            return op.add(frozen(name, dims), scatterDelta(graph, deltas[at], picks[at]));
          };
          const logits = causalLmLogits(spec, inputIds, weight, attentionMask); // (B, T, V)
          const scored = sequenceLogProbs(logits, inputIds, responseMask);
          return [scored.logp, scored.meanLogit, logits];
        },
      });
      t.diagnostic(
        `max relative error ${result.maxRelativeError.toExponential(2)} over ${picks.length} weights, ${result.evaluations} runs`,
      );
      assert.ok(result.maxRelativeError < 1e-5, `relative errors ${result.relativeErrors}`);
    });
  }
});

/** delta (k,) placed at flat `indices` of a zero tensor of `dims`: delta @ one-hot (k, N), reshaped. */
function scatterDelta(
  graph: Graph,
  delta: Tensor,
  pick: { dims: number[]; count: number; indices: number[] },
): Tensor {
  const oneHot = new Float64Array(pick.indices.length * pick.count);
  pick.indices.forEach((index, k) => {
    oneHot[k * pick.count + index] += 1;
  });
  const selection = graph.constant(hostTensor('float64', [pick.indices.length, pick.count], oneHot));
  return op.reshape(op.matmul(op.unsqueeze(delta, 0), selection), pick.dims);
}

it('modelWeights: trainable names become graph inputs in first-use order, the rest frozen initializers', () => {
  const spec = specs[2];
  const parameters = randomParameters(spec, 3);
  const trainable = new Set(['model.norm.weight', 'model.layers.1.self_attn.q_proj.bias']);
  const graph = new Graph('weights');
  const inputIds = graph.input('input_ids', 'int64', ['batch', 'seq']);
  const weights = modelWeights(graph, spec, { parameters, trainable, dtype: 'float64' });
  causalLmLogits(spec, inputIds, weights.weight);
  assert.deepEqual(
    weights.trainable.map((tensor) => [tensor.name, tensor.source.kind, tensor.dtype]),
    [
      ['model.layers.1.self_attn.q_proj.bias', 'input', 'float64'],
      ['model.norm.weight', 'input', 'float64'],
    ],
  );
  const frozen = graph.initializers.filter((tensor) => tensor.source.kind === 'initializer');
  assert.deepEqual(
    frozen.map((tensor) => tensor.name).sort(),
    [...parameters.keys()].filter((name) => !trainable.has(name)).sort(),
  );
  assert.ok(frozen.every((tensor) => tensor.source.kind === 'initializer' && tensor.source.frozen));
});

describe('badly shaped inputs fail at build time, naming the field', () => {
  const [gpt2, llama] = specs;
  const setup = (spec: CausalLmSpec, tokens: number | string = 'seq') => {
    const graph = new Graph('errors');
    const inputIds = graph.input('input_ids', 'int64', ['batch', tokens]);
    return { graph, inputIds, weight: frozenWeights(graph, spec, toFloat32(randomParameters(spec, 1))) };
  };

  it('input_ids must be int64 (B, T)', () => {
    const { graph, weight } = setup(llama);
    const floats = graph.input('floats', 'float32', ['batch', 'seq']);
    assert.throws(() => causalLmLogits(llama, floats, weight), /input_ids must be int64, got floats/);
    const flat = graph.input('flat', 'int64', ['seq']);
    assert.throws(() => causalLmLogits(llama, flat, weight), /input_ids must be \(B, T\), got flat/);
  });

  it('attention_mask and position_ids must match input_ids', () => {
    const { graph, inputIds, weight } = setup(llama);
    const mask = graph.input('attention_mask', 'int64', ['batch', 'other']);
    assert.throws(
      () => causalLmLogits(llama, inputIds, weight, mask),
      (error) =>
        error instanceof op.ShapeError && /attention_mask must match the \(B, T\)/.test(error.message),
    );
    const positions = graph.input('position_ids', 'int64', [1, 'other']);
    assert.throws(
      () => causalLmLogits(llama, inputIds, weight, undefined, positions),
      /position_ids must match/,
    );
  });

  it('response_mask must match the logits', () => {
    const { graph, inputIds, weight } = setup(gpt2);
    const logits = causalLmLogits(gpt2, inputIds, weight);
    const responseMask = graph.input('response_mask', 'int64', ['batch', 5]);
    assert.throws(
      () => sequenceLogProbs(logits, inputIds, responseMask),
      /response_mask must match the \(B, T\)/,
    );
  });

  it('GPT-2 rejects more tokens than n_positions', () => {
    const { inputIds, weight } = setup(gpt2, 9);
    assert.throws(() => causalLmLogits(gpt2, inputIds, weight), /9 tokens exceed n_positions 8/);
  });

  it('weights must have the architecture’s shapes and be present', () => {
    const parameters = toFloat32(randomParameters(llama, 1));
    parameters.set('model.norm.weight', hostTensor('float32', [9], new Float32Array(9)));
    const graph = new Graph('errors');
    const inputIds = graph.input('input_ids', 'int64', ['batch', 'seq']);
    assert.throws(
      () => causalLmLogits(llama, inputIds, frozenWeights(graph, llama, parameters)),
      /weight model\.norm\.weight is float32 \[9\], expected float32 \[8\]/,
    );
    parameters.delete('lm_head.weight');
    const again = new Graph('errors');
    assert.throws(
      () =>
        causalLmLogits(
          llama,
          again.input('input_ids', 'int64', ['batch', 'seq']),
          modelWeights(again, llama, { parameters, trainable: new Set(['model.norm.weight']) }).weight,
        ),
      /weight lm_head\.weight is frozen but missing from the parameters/,
    );
  });
});

function toFloat32(parameters: ParameterSet): ParameterSet {
  return new Map(
    [...parameters].map(([name, value]) => [
      name,
      hostTensor('float32', value.dims, Float32Array.from(value.data as Float64Array)),
    ]),
  );
}
