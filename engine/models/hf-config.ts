// config.json of the Hugging Face causal LMs dpoflow runs, validated with zod and normalized into one spec
// per family. Unknown architectures are rejected by name; fields we don't use are allowed (HF adds many).

import { z } from 'zod';
import type { Gpt2Config } from './gpt2.ts';

export const supportedArchitectures = ['GPT2LMHeadModel', 'LlamaForCausalLM', 'Qwen2ForCausalLM'] as const;

const positiveInt = z.number().int().positive();
const tokenId = z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullish();

const gpt2Schema = z.looseObject({
  vocab_size: positiveInt,
  n_positions: positiveInt,
  n_embd: positiveInt,
  n_layer: positiveInt,
  n_head: positiveInt,
  n_inner: positiveInt.nullish(), // MLP width; null means 4 · n_embd, the only width the graph builds
  layer_norm_epsilon: z.number().positive().default(1e-5),
  activation_function: z.enum(['gelu_new', 'gelu_pytorch_tanh']).default('gelu_new'), // both tanh-approximated
  scale_attn_weights: z.literal(true).default(true),
  scale_attn_by_inverse_layer_idx: z.literal(false).default(false),
  tie_word_embeddings: z.literal(true).default(true), // GPT-2 has no separate lm_head
  bos_token_id: tokenId,
  eos_token_id: tokenId,
});

/** Rope settings: transformers ≥ 5 writes `rope_parameters` (theta inside); older configs `rope_theta` + `rope_scaling`. */
const ropeSchema = z.looseObject({
  rope_type: z.enum(['default', 'llama3']).optional(),
  type: z.enum(['default', 'llama3']).optional(), // older configs name it `type`
  rope_theta: z.number().positive().optional(),
  factor: z.number().positive().optional(),
  low_freq_factor: z.number().positive().optional(),
  high_freq_factor: z.number().positive().optional(),
  original_max_position_embeddings: positiveInt.optional(),
});

const llamaSchema = z.looseObject({
  vocab_size: positiveInt,
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt.optional(),
  head_dim: positiveInt.nullish(),
  max_position_embeddings: positiveInt,
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().optional(),
  rope_scaling: ropeSchema.nullish(),
  rope_parameters: ropeSchema.nullish(),
  tie_word_embeddings: z.boolean().default(false),
  // Llama's attention_bias also biases o_proj, which the graph lacks; Qwen2's q/k/v biases need no flag.
  attention_bias: z.literal(false).default(false),
  mlp_bias: z.literal(false).default(false),
  hidden_act: z.literal('silu').default('silu'),
  // Qwen2 writes sliding-window fields; only configs with the window off (every layer full attention) run.
  use_sliding_window: z.literal(false).default(false),
  layer_types: z.array(z.literal('full_attention')).optional(),
  bos_token_id: tokenId,
  eos_token_id: tokenId,
});

export interface LlamaSpecConfig {
  vocab_size: number;
  hidden_size: number; // D
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number; // H
  num_key_value_heads: number; // K, H % K === 0
  head_dim: number; // E
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling?: {
    factor: number;
    low_freq_factor: number;
    high_freq_factor: number;
    original_max_position_embeddings: number;
  };
  tie_word_embeddings: boolean;
  /** q/k/v projections carry biases (Qwen2). */
  qkv_bias: boolean;
}

export type CausalLmSpec =
  | {
      architecture: 'GPT2LMHeadModel';
      family: 'gpt2';
      config: Gpt2Config;
      eosTokenIds: number[];
      bosTokenId?: number;
    }
  | {
      architecture: 'LlamaForCausalLM' | 'Qwen2ForCausalLM';
      family: 'llama';
      config: LlamaSpecConfig;
      eosTokenIds: number[];
      bosTokenId?: number;
    };

export class ModelConfigError extends Error {
  override readonly name = 'ModelConfigError';
}

const ids = (value: number | number[] | null | undefined): number[] =>
  value === null || value === undefined ? [] : Array.isArray(value) ? value : [value];

/** Parses config.json's contents; `source` names the file in errors. */
export function parseModelConfig(raw: unknown, source = 'config.json'): CausalLmSpec {
  if (typeof raw !== 'object' || raw === null)
    throw new ModelConfigError(`${source}: expected a JSON object`);
  const record = raw as Record<string, unknown>;
  const architecture =
    (Array.isArray(record.architectures) ? record.architectures[0] : undefined) ??
    modelTypeArchitecture(record.model_type);
  if (!supportedArchitectures.includes(architecture as never)) {
    throw new ModelConfigError(
      `${source}: architecture ${JSON.stringify(architecture ?? record.model_type)} is not supported (supported: ${supportedArchitectures.join(', ')})`,
    );
  }
  const check = <T extends z.ZodType>(schema: T): z.output<T> => {
    const result = schema.safeParse(raw);
    if (result.success) return result.data;
    const problems = result.error.issues.map(
      (issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
    throw new ModelConfigError(`${source} (${architecture}): ${problems.join('; ')}`);
  };
  if (architecture === 'GPT2LMHeadModel') {
    const c = check(gpt2Schema);
    if (c.n_embd % c.n_head !== 0)
      throw new ModelConfigError(`${source}: n_embd ${c.n_embd} is not divisible by n_head ${c.n_head}`);
    if (c.n_inner != null && c.n_inner !== 4 * c.n_embd) {
      throw new ModelConfigError(
        `${source}: n_inner ${c.n_inner} is not supported (only null or 4 · n_embd = ${4 * c.n_embd})`,
      );
    }
    const config: Gpt2Config = {
      vocab_size: c.vocab_size,
      n_positions: c.n_positions,
      n_embd: c.n_embd,
      n_layer: c.n_layer,
      n_head: c.n_head,
      layer_norm_epsilon: c.layer_norm_epsilon,
    };
    return {
      architecture,
      family: 'gpt2',
      config,
      eosTokenIds: ids(c.eos_token_id),
      bosTokenId: ids(c.bos_token_id)[0],
    };
  }
  const c = check(llamaSchema);
  const heads = c.num_attention_heads;
  const kvHeads = c.num_key_value_heads ?? heads;
  if (heads % kvHeads !== 0) {
    throw new ModelConfigError(
      `${source}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
    );
  }
  const headDim = c.head_dim ?? c.hidden_size / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ModelConfigError(
      `${source}: head dim ${headDim} must be an even integer (hidden_size / num_attention_heads)`,
    );
  }
  const rope = { ...c.rope_scaling, ...c.rope_parameters };
  const ropeType = rope.rope_type ?? rope.type ?? 'default';
  const { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } = rope;
  if (
    ropeType === 'llama3' &&
    !(factor && low_freq_factor && high_freq_factor && original_max_position_embeddings)
  ) {
    throw new ModelConfigError(
      `${source}: llama3 rope scaling needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings`,
    );
  }
  const config: LlamaSpecConfig = {
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    rms_norm_eps: c.rms_norm_eps,
    rope_theta: rope.rope_theta ?? c.rope_theta ?? 10000,
    rope_scaling:
      ropeType === 'llama3'
        ? {
            factor: factor!,
            low_freq_factor: low_freq_factor!,
            high_freq_factor: high_freq_factor!,
            original_max_position_embeddings: original_max_position_embeddings!,
          }
        : undefined,
    tie_word_embeddings: c.tie_word_embeddings,
    qkv_bias: architecture === 'Qwen2ForCausalLM',
  };
  return {
    architecture: architecture as 'LlamaForCausalLM' | 'Qwen2ForCausalLM',
    family: 'llama',
    config,
    eosTokenIds: ids(c.eos_token_id),
    bosTokenId: ids(c.bos_token_id)[0],
  };
}

function modelTypeArchitecture(modelType: unknown): string | undefined {
  return { gpt2: 'GPT2LMHeadModel', llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM' }[String(modelType)];
}
