// Llama (LlamaForCausalLM) and Qwen2 (Qwen2ForCausalLM: Llama plus q/k/v biases) on the engine, nanoGPT-style.
// RMSNorm, rotate-half RoPE (with llama3 frequency scaling), grouped-query attention, SwiGLU. Weight names are
// the checkpoint's. Legend: B batch, T tokens, D width, H heads, K kv heads, E head width, I MLP width, V vocab.

import * as F from '../functional.ts';
import type { Tensor } from '../graph.ts';
import * as op from '../ops/index.ts';
import { attend, attentionAllowed, type ForwardOptions, type LayerCache } from './attention.ts';
import type { WeightSource } from './gpt2.ts';
import type { LlamaSpecConfig } from './hf-config.ts';

export function llamaWeightShapes(config: LlamaSpecConfig): Map<string, number[]> {
  const { vocab_size: V, hidden_size: D, intermediate_size: I, head_dim: E } = config;
  const [H, K] = [config.num_attention_heads, config.num_key_value_heads];
  const shapes = new Map<string, number[]>([['model.embed_tokens.weight', [V, D]]]);
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const prefix = `model.layers.${i}`;
    shapes.set(`${prefix}.input_layernorm.weight`, [D]);
    for (const [name, rows] of [
      ['q', H * E],
      ['k', K * E],
      ['v', K * E],
    ] as const) {
      shapes.set(`${prefix}.self_attn.${name}_proj.weight`, [rows, D]); // Linear layout [out, in]: x @ Wᵀ
      if (config.qkv_bias) shapes.set(`${prefix}.self_attn.${name}_proj.bias`, [rows]);
    }
    shapes.set(`${prefix}.self_attn.o_proj.weight`, [D, H * E]);
    shapes.set(`${prefix}.post_attention_layernorm.weight`, [D]);
    shapes.set(`${prefix}.mlp.gate_proj.weight`, [I, D]);
    shapes.set(`${prefix}.mlp.up_proj.weight`, [I, D]);
    shapes.set(`${prefix}.mlp.down_proj.weight`, [D, I]);
  }
  shapes.set('model.norm.weight', [D]);
  if (!config.tie_word_embeddings) shapes.set('lm_head.weight', [V, D]);
  return shapes;
}

/** RoPE inverse frequencies, with transformers' llama3 rescaling (_compute_llama3_parameters) when configured. */
export function ropeFrequencies(config: LlamaSpecConfig): Float64Array {
  const E = config.head_dim;
  const base = new Float64Array(E / 2).map((_, i) => 1 / config.rope_theta ** ((2 * i) / E));
  const scaling = config.rope_scaling;
  if (!scaling) return base;
  const {
    factor,
    low_freq_factor: low,
    high_freq_factor: high,
    original_max_position_embeddings: context,
  } = scaling;
  return base.map((frequency) => {
    const wavelength = (2 * Math.PI) / frequency;
    if (wavelength < context / high) return frequency; // high frequencies: unchanged
    if (wavelength > context / low) return frequency / factor; // low frequencies: scaled down
    const smooth = (context / wavelength - low) / (high - low);
    return ((1 - smooth) * frequency) / factor + smooth * frequency;
  });
}

function linear(
  x: Tensor,
  weight: WeightSource,
  name: string,
  rows: number,
  columns: number,
  bias = false,
): Tensor {
  const y = op.matmul(x, op.transpose(weight(`${name}.weight`, [rows, columns]))); // (…, rows)
  return bias ? op.add(y, weight(`${name}.bias`, [rows])) : y;
}

/** Grouped-query attention; `allowed` bool (B or 1, 1, T, L), `rope` from F.rotaryTables. x (B, T, D) → (B, T, D). */
function attention(
  x: Tensor,
  allowed: Tensor,
  rope: [Tensor, Tensor],
  weight: WeightSource,
  prefix: string,
  config: LlamaSpecConfig,
  past?: LayerCache,
): { out: Tensor; present: LayerCache } {
  const { hidden_size: D, head_dim: E } = config;
  const [H, K] = [config.num_attention_heads, config.num_key_value_heads];
  const [B, T] = [x.dims[0], x.dims[1]];
  const heads = (t: Tensor, count: number) => op.transpose(op.reshape(t, [B, T, count, E]), [0, 2, 1, 3]); // (B, n, T, E)
  const q = F.applyRotary(heads(linear(x, weight, `${prefix}.q_proj`, H * E, D, config.qkv_bias), H), rope); // (B, H, T, E)
  const k = F.applyRotary(heads(linear(x, weight, `${prefix}.k_proj`, K * E, D, config.qkv_bias), K), rope); // (B, K, T, E)
  const v = heads(linear(x, weight, `${prefix}.v_proj`, K * E, D, config.qkv_bias), K); // (B, K, T, E)
  const { y, present } = attend(q, k, v, allowed, past); // (B, H, T, E)
  const merged = op.reshape(op.transpose(y, [0, 2, 1, 3]), [B, T, H * E]); // (B, T, H·E)
  return { out: linear(merged, weight, `${prefix}.o_proj`, D, H * E), present };
}

function mlp(x: Tensor, weight: WeightSource, prefix: string, config: LlamaSpecConfig): Tensor {
  const { hidden_size: D, intermediate_size: I } = config;
  const gate = F.silu(linear(x, weight, `${prefix}.gate_proj`, I, D)); // (B, T, I)
  return linear(
    op.mul(gate, linear(x, weight, `${prefix}.up_proj`, I, D)),
    weight,
    `${prefix}.down_proj`,
    D,
    I,
  );
}

function rmsNorm(x: Tensor, weight: WeightSource, name: string, config: LlamaSpecConfig): Tensor {
  return F.rmsNorm(x, weight(`${name}.weight`, [config.hidden_size]), config.rms_norm_eps);
}

/** Final hidden states (B, T, D) after model.norm, and each layer's key/value cache. */
export function llamaForward(
  inputIds: Tensor,
  weight: WeightSource,
  config: LlamaSpecConfig,
  options: ForwardOptions = {},
): { hidden: Tensor; present: LayerCache[] } {
  const { vocab_size: V, hidden_size: D } = config;
  let x = op.gather(weight('model.embed_tokens.weight', [V, D]), inputIds); // (B, T, D)
  const allowed = attentionAllowed(inputIds, options.attentionMask, options.past !== undefined);
  const positions = options.positionIds ?? op.unsqueeze(op.arange(inputIds, 1), 0); // (B or 1, T)
  const rope = F.rotaryTables(positions, ropeFrequencies(config), x.dtype);
  const present: LayerCache[] = [];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const prefix = `model.layers.${i}`;
    const normed = rmsNorm(x, weight, `${prefix}.input_layernorm`, config);
    const attended = attention(
      normed,
      allowed,
      rope,
      weight,
      `${prefix}.self_attn`,
      config,
      options.past?.[i],
    );
    x = op.add(x, attended.out);
    present.push(attended.present);
    x = op.add(
      x,
      mlp(rmsNorm(x, weight, `${prefix}.post_attention_layernorm`, config), weight, `${prefix}.mlp`, config),
    );
  }
  return { hidden: rmsNorm(x, weight, 'model.norm', config), present };
}

/** lm_head (or the tied embedding): hidden (…, D) → logits (…, V). */
export function llamaHead(hidden: Tensor, weight: WeightSource, config: LlamaSpecConfig): Tensor {
  const { vocab_size: V, hidden_size: D } = config;
  const head = config.tie_word_embeddings
    ? weight('model.embed_tokens.weight', [V, D])
    : weight('lm_head.weight', [V, D]);
  return op.matmul(hidden, op.transpose(head)); // (…, V)
}

/**
 * Logits (B, T, V) for input_ids (B, T) int64. attention_mask (B, T) (1 = token) masks padded keys;
 * position_ids (B or 1, T) int64 rotate q and k and default to 0…T−1, as in transformers' forward.
 */
export function llamaLogits(
  inputIds: Tensor,
  weight: WeightSource,
  config: LlamaSpecConfig,
  attentionMask?: Tensor,
  positionIds?: Tensor,
): Tensor {
  return llamaHead(
    llamaForward(inputIds, weight, config, { attentionMask, positionIds }).hidden,
    weight,
    config,
  );
}
