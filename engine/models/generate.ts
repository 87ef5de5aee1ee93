// Sampling with a key/value cache. One decoder model serves prefill and decoding: it takes the new tokens,
// the attention mask over all tokens, their positions and every layer's cached keys/values, and returns the
// last position's logits and the grown cache (input/output names as Hugging Face Optimum exports use, so the
// exported ONNX file runs in any ONNX Runtime). Legend: B batch, S new tokens, P cached, K kv heads, E head width.

import { type HostTensor, hostTensor } from '../dtype.ts';
import { Graph } from '../graph.ts';
import { saveModel, serializeModel } from '../onnx.ts';
import * as op from '../ops/index.ts';
import type { ParameterSet } from '../parameters.ts';
import { mulberry32 } from '../random.ts';
import { createSession, type RuntimeOptions, type Session } from '../runtime.ts';
import type { LayerCache } from './attention.ts';
import { frozenWeights } from './causal-lm.ts';
import { gpt2Forward, gpt2Head } from './gpt2.ts';
import type { CausalLmSpec } from './hf-config.ts';
import { llamaForward, llamaHead } from './llama.ts';

/** Layers, kv heads and head width of the cache. */
export function cacheShape(spec: CausalLmSpec): { layers: number; kvHeads: number; headDim: number } {
  if (spec.family === 'gpt2') {
    const { n_layer, n_head, n_embd } = spec.config;
    return { layers: n_layer, kvHeads: n_head, headDim: n_embd / n_head };
  }
  const { num_hidden_layers, num_key_value_heads, head_dim } = spec.config;
  return { layers: num_hidden_layers, kvHeads: num_key_value_heads, headDim: head_dim };
}

export const cacheNames = {
  past: (layer: number, kind: 'key' | 'value') => `past_key_values.${layer}.${kind}`,
  present: (layer: number, kind: 'key' | 'value') => `present.${layer}.${kind}`,
};

function buildDecoderGraph(spec: CausalLmSpec, parameters: ParameterSet): Graph {
  const graph = new Graph('decoder');
  const { layers, kvHeads, headDim } = cacheShape(spec);
  const inputIds = graph.input('input_ids', 'int64', ['batch', 'seq']);
  const attentionMask = graph.input('attention_mask', 'int64', ['batch', 'past+seq']);
  const positionIds = graph.input('position_ids', 'int64', ['batch', 'seq']);
  const past: LayerCache[] = Array.from({ length: layers }, (_, layer) => ({
    key: graph.input(cacheNames.past(layer, 'key'), 'float32', ['batch', kvHeads, 'past', headDim]),
    value: graph.input(cacheNames.past(layer, 'value'), 'float32', ['batch', kvHeads, 'past', headDim]),
  }));
  const weight = frozenWeights(graph, spec, parameters);
  const options = { attentionMask, positionIds, past };
  const { hidden, present } =
    spec.family === 'gpt2'
      ? gpt2Forward(inputIds, weight, spec.config, options)
      : llamaForward(inputIds, weight, spec.config, options);
  const last = op.squeeze(op.slice(hidden, [-1], [op.END], [1]), 1); // (B, D): only the next token's logits
  graph.output(
    'logits',
    spec.family === 'gpt2' ? gpt2Head(last, weight, spec.config) : llamaHead(last, weight, spec.config),
  );
  present.forEach((cache, layer) => {
    graph.output(cacheNames.present(layer, 'key'), cache.key);
    graph.output(cacheNames.present(layer, 'value'), cache.value);
  });
  return graph;
}

export function buildDecoderModel(spec: CausalLmSpec, parameters: ParameterSet): Uint8Array {
  return serializeModel(buildDecoderGraph(spec, parameters));
}

/** Writes the decoder as a standalone ONNX file (weights inside, or beside it as external data when large). */
export async function exportDecoderOnnx(spec: CausalLmSpec, parameters: ParameterSet, path: string) {
  return saveModel(buildDecoderGraph(spec, parameters), path, {
    externalData: { fileName: `${path.split('/').pop()}.data`, thresholdBytes: 1 << 20 },
  });
}

export interface GenerationOptions {
  maxNewTokens: number;
  /** 0 (default) decodes greedily; otherwise logits are divided by it before sampling. */
  temperature?: number;
  topK?: number; // keep the k most likely tokens (0 = all)
  topP?: number; // keep the smallest set of tokens whose probability reaches p (1 = all)
  /** Generation stops for a sequence after it emits one of these (it is included in the output). */
  stopTokens?: readonly number[];
  seed?: number;
}

export class Generator {
  private constructor(
    private readonly session: Session,
    private readonly spec: CausalLmSpec,
  ) {}

  static async create(
    spec: CausalLmSpec,
    parameters: ParameterSet,
    runtime: Partial<RuntimeOptions> = {},
  ): Promise<Generator> {
    return new Generator(await createSession(buildDecoderModel(spec, parameters), runtime), spec);
  }

  /** New tokens for each prompt; prompts of different lengths are left-padded into one batch. */
  async generate(prompts: readonly (readonly number[])[], options: GenerationOptions): Promise<number[][]> {
    const B = prompts.length;
    const width = Math.max(...prompts.map((prompt) => prompt.length));
    const { layers, kvHeads, headDim } = cacheShape(this.spec);
    const pad = this.spec.eosTokenIds[0] ?? 0;
    let ids: number[] = [];
    let mask: number[][] = [];
    const positions: number[] = [];
    for (const prompt of prompts) {
      const padding = width - prompt.length;
      ids.push(...Array(padding).fill(pad), ...prompt);
      mask.push([...Array(padding).fill(0), ...Array(prompt.length).fill(1)]);
      positions.push(...Array(padding).fill(0), ...prompt.map((_, i) => i));
    }
    let feeds: Record<string, HostTensor> = {};
    for (let layer = 0; layer < layers; layer++) {
      for (const kind of ['key', 'value'] as const) {
        feeds[cacheNames.past(layer, kind)] = hostTensor(
          'float32',
          [B, kvHeads, 0, headDim],
          new Float32Array(0),
        );
      }
    }
    let step = { ids, positions, length: width };
    const random = mulberry32(options.seed ?? 0);
    const generated: number[][] = prompts.map(() => []);
    const done = prompts.map(() => false);
    const stops = new Set(options.stopTokens ?? []);
    const nextPosition = prompts.map((prompt) => prompt.length);
    for (let t = 0; t < options.maxNewTokens && done.includes(false); t++) {
      feeds.input_ids = hostTensor('int64', [B, step.length], BigInt64Array.from(step.ids, BigInt));
      feeds.position_ids = hostTensor('int64', [B, step.length], BigInt64Array.from(step.positions, BigInt));
      feeds.attention_mask = hostTensor(
        'int64',
        [B, mask[0].length],
        BigInt64Array.from(mask.flat(), BigInt),
      );
      const out = await this.session.run(feeds, undefined, { transferFeeds: true });
      const logits = out.logits.data as Float32Array; // (B, V)
      const vocab = logits.length / B;
      ids = [];
      for (let row = 0; row < B; row++) {
        const token = done[row]
          ? pad
          : pick(logits.subarray(row * vocab, (row + 1) * vocab), options, random);
        ids.push(token);
        if (!done[row]) {
          generated[row].push(token);
          if (stops.has(token)) done[row] = true;
        }
      }
      mask = mask.map((row) => [...row, 1]);
      step = { ids, positions: nextPosition.map((position) => position + t), length: 1 };
      feeds = {};
      for (let layer = 0; layer < layers; layer++) {
        for (const kind of ['key', 'value'] as const)
          feeds[cacheNames.past(layer, kind)] = out[cacheNames.present(layer, kind)];
      }
    }
    return generated;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** Greedy argmax, or a sample after temperature, top-k and top-p, with the seeded generator. */
function pick(logits: Float32Array, options: GenerationOptions, random: () => number): number {
  const temperature = options.temperature ?? 0;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  let order = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b);
  if (options.topK && options.topK > 0) order = order.slice(0, options.topK);
  const top = logits[order[0]] / temperature;
  const weights = order.map((i) => Math.exp(logits[i] / temperature - top));
  const total = weights.reduce((a, b) => a + b, 0);
  const topP = options.topP ?? 1;
  let kept = order.length;
  if (topP < 1) {
    let cumulative = 0;
    for (kept = 0; kept < order.length && cumulative < topP; kept++) cumulative += weights[kept] / total;
  }
  const keptTotal = weights.slice(0, kept).reduce((a, b) => a + b, 0);
  let draw = random() * keptTotal;
  for (let i = 0; i < kept; i++) {
    draw -= weights[i];
    if (draw <= 0) return order[i];
  }
  return order[kept - 1];
}
