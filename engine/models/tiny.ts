// Tiny random causal LMs for tests and the demo: a valid Hugging Face directory (config.json, model.safetensors,
// generation_config.json, byte-level tokenizer files) that both dpoflow and transformers load.
// Initialization follows transformers: normal(0, 0.02) weights, zero biases, unit norms.

import { byteLevelVocabSize, writeByteLevelTokenizer } from '../../text/byte-level-tokenizer.ts';
import { elementCount, hostTensor } from '../dtype.ts';
import type { ParameterSet } from '../parameters.ts';
import { mulberry32, standardNormal } from '../random.ts';
import { weightShapes } from './causal-lm.ts';
import { saveCheckpoint } from './checkpoint.ts';
import { parseModelConfig } from './hf-config.ts';

export interface TinyModelOptions {
  family: 'gpt2' | 'llama' | 'qwen2';
  seed?: number; // weights are a function of the options alone (default 0)
  layers?: number; // 2
  width?: number; // D, 64
  heads?: number; // H, 4
  kvHeads?: number; // llama/qwen2 K, default H / 2: grouped-query attention
  vocabSize?: number; // V, default 259 = the byte-level tokenizer's; larger leaves ids no text produces
  positions?: number; // longest sequence, 256
  tied?: boolean; // lm_head shares the embedding; default gpt2 true (its only form), llama false, qwen2 true
}

export class TinyModelError extends Error {
  override readonly name = 'TinyModelError';
}

// Token ids of the byte-level tokenizer's specials (256 bytes first).
const [BOS, EOS, PAD] = [256, 257, 258];
const initializerRange = 0.02;

export function tinyConfig(options: TinyModelOptions): Record<string, unknown> {
  const {
    family,
    layers = 2,
    width = 64,
    heads = 4,
    positions = 256,
    vocabSize = byteLevelVocabSize,
  } = options;
  if (vocabSize < byteLevelVocabSize) {
    throw new TinyModelError(
      `vocabSize ${vocabSize} is below the byte-level tokenizer's ${byteLevelVocabSize}`,
    );
  }
  if (family === 'gpt2' && options.tied === false) {
    throw new TinyModelError('GPT-2 ties lm_head to the embedding: tied must not be false');
  }
  const common = {
    bos_token_id: BOS,
    eos_token_id: EOS,
    pad_token_id: PAD,
    vocab_size: vocabSize,
    initializer_range: initializerRange,
  };
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
    num_key_value_heads: options.kvHeads ?? Math.max(1, heads / 2),
    max_position_embeddings: positions,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: options.tied ?? family === 'qwen2',
    hidden_act: 'silu',
    ...common,
  };
}

/** Weights for `rawConfig` drawn in weight order from one seeded stream. */
export function tinyParameters(rawConfig: Record<string, unknown>, seed: number): ParameterSet {
  const spec = parseModelConfig(rawConfig);
  const normal = standardNormal(mulberry32(seed));
  // GPT-2 scales the residual projections down by √(2 · layers), as transformers' _init_weights does.
  const residualStd =
    spec.family === 'gpt2' ? initializerRange / Math.sqrt(2 * spec.config.n_layer) : initializerRange;
  const parameters: ParameterSet = new Map();
  for (const [name, dims] of weightShapes(spec)) {
    const data = new Float32Array(elementCount(dims));
    if (/(ln_\w+|norm)\.weight$/.test(name)) data.fill(1);
    else if (!name.endsWith('.bias')) {
      const std = spec.family === 'gpt2' && name.endsWith('.c_proj.weight') ? residualStd : initializerRange;
      for (let i = 0; i < data.length; i++) data[i] = normal() * std;
    }
    parameters.set(name, hostTensor('float32', dims, data));
  }
  return parameters;
}

/** Writes a tiny random model directory (weights, configs, byte-level tokenizer) to `dir`; returns its config. */
export async function writeTinyModel(
  dir: string,
  options: TinyModelOptions,
): Promise<Record<string, unknown>> {
  const rawConfig = tinyConfig(options);
  await saveCheckpoint(
    dir,
    {
      rawConfig,
      parameters: tinyParameters(rawConfig, options.seed ?? 0),
      generationConfig: { bos_token_id: BOS, eos_token_id: EOS, pad_token_id: PAD },
    },
    { addFiles: writeByteLevelTokenizer },
  );
  return rawConfig;
}
