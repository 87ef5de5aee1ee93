// GPT-2 (GPT2LMHeadModel) on the engine, read top to bottom like nanoGPT. Weight names are the checkpoint's,
// so loading is a key-for-key copy. Legend: B batch, T tokens, D width (n_embd), H heads, E head width, V vocab.

import * as F from '../functional.ts';
import type { Tensor } from '../graph.ts';
import * as op from '../ops/index.ts';
import { attend, attentionAllowed, type ForwardOptions, type LayerCache } from './attention.ts';

export interface Gpt2Config {
  vocab_size: number; // V
  n_positions: number; // longest sequence
  n_embd: number; // D
  n_layer: number;
  n_head: number; // H
  layer_norm_epsilon: number;
}

/** Supplies a weight by its Hugging Face name: a trainable graph input or a frozen initializer. */
export type WeightSource = (name: string, dims: readonly number[]) => Tensor;

/** Every weight name and shape, lm_head tied to transformer.wte. */
export function gpt2WeightShapes(config: Gpt2Config): Map<string, number[]> {
  const { vocab_size: V, n_positions: P, n_embd: D } = config;
  const shapes = new Map<string, number[]>([
    ['transformer.wte.weight', [V, D]],
    ['transformer.wpe.weight', [P, D]],
  ]);
  for (let i = 0; i < config.n_layer; i++) {
    const prefix = `transformer.h.${i}`;
    for (const [name, dims] of [
      ['ln_1.weight', [D]],
      ['ln_1.bias', [D]],
      ['attn.c_attn.weight', [D, 3 * D]],
      ['attn.c_attn.bias', [3 * D]], // Conv1D layout: x @ W + b
      ['attn.c_proj.weight', [D, D]],
      ['attn.c_proj.bias', [D]],
      ['ln_2.weight', [D]],
      ['ln_2.bias', [D]],
      ['mlp.c_fc.weight', [D, 4 * D]],
      ['mlp.c_fc.bias', [4 * D]],
      ['mlp.c_proj.weight', [4 * D, D]],
      ['mlp.c_proj.bias', [D]],
    ] as const) {
      shapes.set(`${prefix}.${name}`, [...dims]);
    }
  }
  shapes.set('transformer.ln_f.weight', [D]);
  shapes.set('transformer.ln_f.bias', [D]);
  return shapes;
}

function conv1d(x: Tensor, weight: WeightSource, prefix: string, fanIn: number, fanOut: number): Tensor {
  return op.add(
    op.matmul(x, weight(`${prefix}.weight`, [fanIn, fanOut])),
    weight(`${prefix}.bias`, [fanOut]),
  );
}

function layerNorm(x: Tensor, weight: WeightSource, prefix: string, config: Gpt2Config): Tensor {
  const D = config.n_embd;
  return op.layerNorm(x, weight(`${prefix}.weight`, [D]), weight(`${prefix}.bias`, [D]), {
    epsilon: config.layer_norm_epsilon,
  });
}

/** Causal self-attention; `allowed` bool (B or 1, 1, T, L). x (B, T, D) → (B, T, D) and this layer's cache. */
function attention(
  x: Tensor,
  allowed: Tensor,
  weight: WeightSource,
  prefix: string,
  config: Gpt2Config,
  past?: LayerCache,
): { out: Tensor; present: LayerCache } {
  const D = config.n_embd;
  const H = config.n_head;
  const E = D / H;
  const split = (t: Tensor) => op.transpose(op.reshape(t, [x.dims[0], x.dims[1], H, E]), [0, 2, 1, 3]); // (B, H, T, E)
  const [q, k, v] = op.split(conv1d(x, weight, `${prefix}.c_attn`, D, 3 * D), 3, -1).map(split);
  const { y, present } = attend(q, k, v, allowed, past); // y (B, H, T, E)
  const merged = op.reshape(op.transpose(y, [0, 2, 1, 3]), [x.dims[0], x.dims[1], D]); // (B, T, D)
  return { out: conv1d(merged, weight, `${prefix}.c_proj`, D, D), present };
}

function mlp(x: Tensor, weight: WeightSource, prefix: string, config: Gpt2Config): Tensor {
  const D = config.n_embd;
  const hidden = F.geluTanh(conv1d(x, weight, `${prefix}.c_fc`, D, 4 * D)); // gelu_new, (B, T, 4D)
  return conv1d(hidden, weight, `${prefix}.c_proj`, 4 * D, D);
}

/** One pre-LayerNorm block with residuals; x (B, T, D). */
export function gpt2Block(
  x: Tensor,
  allowed: Tensor,
  weight: WeightSource,
  layer: number,
  config: Gpt2Config,
  past?: LayerCache,
): { out: Tensor; present: LayerCache } {
  const prefix = `transformer.h.${layer}`;
  const normed = layerNorm(x, weight, `${prefix}.ln_1`, config);
  const { out: attended, present } = attention(normed, allowed, weight, `${prefix}.attn`, config, past);
  const afterAttention = op.add(x, attended);
  const out = op.add(
    afterAttention,
    mlp(layerNorm(afterAttention, weight, `${prefix}.ln_2`, config), weight, `${prefix}.mlp`, config),
  );
  return { out, present };
}

/** Final hidden states (B, T, D) after transformer.ln_f, and each layer's key/value cache. */
export function gpt2Forward(
  inputIds: Tensor,
  weight: WeightSource,
  config: Gpt2Config,
  options: ForwardOptions = {},
): { hidden: Tensor; present: LayerCache[] } {
  const { vocab_size: V, n_positions: P, n_embd: D } = config;
  const tokens = inputIds.dims[1];
  if (typeof tokens === 'number' && tokens > P) {
    throw new op.ShapeError(`gpt2Logits: ${tokens} tokens exceed n_positions ${P} (input_ids ${inputIds})`);
  }
  const wte = weight('transformer.wte.weight', [V, D]);
  const wpe = weight('transformer.wpe.weight', [P, D]);
  const positions = options.positionIds ?? op.unsqueeze(op.arange(inputIds, 1), 0); // (B or 1, T)
  let x = op.add(op.gather(wte, inputIds), op.gather(wpe, positions)); // (B, T, D)
  const allowed = attentionAllowed(inputIds, options.attentionMask, options.past !== undefined);
  const present: LayerCache[] = [];
  for (let layer = 0; layer < config.n_layer; layer++) {
    const block = gpt2Block(x, allowed, weight, layer, config, options.past?.[layer]);
    x = block.out;
    present.push(block.present);
  }
  return { hidden: layerNorm(x, weight, 'transformer.ln_f', config), present };
}

/** The tied lm_head: hidden (…, D) → logits (…, V). */
export function gpt2Head(hidden: Tensor, weight: WeightSource, config: Gpt2Config): Tensor {
  return op.matmul(
    hidden,
    op.transpose(weight('transformer.wte.weight', [config.vocab_size, config.n_embd])),
  );
}

/**
 * Logits (B, T, V) for input_ids (B, T) int64. attention_mask (B, T) (1 = token) masks padded keys;
 * position_ids (B or 1, T) int64 index transformer.wpe and default to 0…T−1, as in transformers' forward.
 */
export function gpt2Logits(
  inputIds: Tensor,
  weight: WeightSource,
  config: Gpt2Config,
  attentionMask?: Tensor,
  positionIds?: Tensor,
): Tensor {
  return gpt2Head(
    gpt2Forward(inputIds, weight, config, { attentionMask, positionIds }).hidden,
    weight,
    config,
  );
}
