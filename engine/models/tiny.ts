// Tiny random causal LMs for tests and the demo: a valid Hugging Face directory (config.json, model.safetensors,
// generation_config.json, byte-level tokenizer files) that both dpoflow and transformers load.
// Initialization follows transformers: normal(0, 0.02) weights, zero biases, unit norms.

import { byteLevelVocabSize, writeByteLevelTokenizer } from '../../text/byte-level-tokenizer.ts';
import { hostTensor } from '../dtype.ts';
import type { ParameterSet } from '../parameters.ts';
import { weightShapes } from './causal-lm.ts';
import { saveCheckpoint } from './checkpoint.ts';
import { parseModelConfig } from './hf-config.ts';

export interface TinyModelOptions {
  family: 'gpt2' | 'llama' | 'qwen2';
  seed?: number;
  layers?: number;
  width?: number;
  heads?: number;
  kvHeads?: number; // llama/qwen2: fewer kv heads than heads is grouped-query attention
  positions?: number;
}

// Token ids of the byte-level tokenizer's specials (256 bytes first).
const [BOS, EOS, PAD] = [256, 257, 258];

export function tinyConfig(options: TinyModelOptions): Record<string, unknown> {
  const { family, layers = 2, width = 64, heads = 4, positions = 256 } = options;
  const common = { bos_token_id: BOS, eos_token_id: EOS, pad_token_id: PAD, vocab_size: byteLevelVocabSize };
  if (family === 'gpt2') {
    return {
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      n_embd: width,
      n_layer: layers,
      n_head: heads,
      n_positions: positions,
      layer_norm_epsilon: 1e-5,
      activation_function: 'gelu_new',
      tie_word_embeddings: true,
      ...common,
    };
  }
  return {
    architectures: [family === 'llama' ? 'LlamaForCausalLM' : 'Qwen2ForCausalLM'],
    model_type: family,
    hidden_size: width,
    intermediate_size: 2 * width,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: options.kvHeads ?? heads / 2,
    max_position_embeddings: positions,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: family === 'qwen2',
    hidden_act: 'silu',
    ...common,
  };
}

/** Seeded normal(0, std) values (mulberry32 + Box–Muller): the same weights on every machine. */
function normals(seed: number, count: number, std: number): Float32Array {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  return Float32Array.from(
    { length: count },
    () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()) * std,
  );
}

export function tinyParameters(rawConfig: Record<string, unknown>, seed: number): ParameterSet {
  const spec = parseModelConfig(rawConfig);
  const parameters: ParameterSet = new Map();
  let index = 0;
  for (const [name, dims] of weightShapes(spec)) {
    const count = dims.reduce((a, b) => a * b, 1);
    const isNorm = /(ln_\w+|layernorm|norm)\.weight$/.test(name);
    const data = name.endsWith('.bias')
      ? new Float32Array(count)
      : isNorm
        ? new Float32Array(count).fill(1)
        : normals(seed * 1000 + index, count, 0.02);
    parameters.set(name, hostTensor('float32', dims, data));
    index++;
  }
  return parameters;
}

/** Writes a tiny random model directory to `dir` and returns its config. */
export async function writeTinyModel(
  dir: string,
  options: TinyModelOptions,
): Promise<Record<string, unknown>> {
  const rawConfig = tinyConfig(options);
  await saveCheckpoint(dir, {
    rawConfig,
    parameters: tinyParameters(rawConfig, options.seed ?? 0),
    generationConfig: { bos_token_id: BOS, eos_token_id: EOS, pad_token_id: PAD },
  });
  await writeByteLevelTokenizer(dir);
  return rawConfig;
}
