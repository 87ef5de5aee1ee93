// GPT-2 (GPT2LMHeadModel) on the engine, read top to bottom like nanoGPT. Weight names are the checkpoint's,
// so loading is a key-for-key copy. Legend: B batch, T tokens, D width (n_embd), H heads, E head width, V vocab.

import * as F from '../functional.ts';
import type { Tensor } from '../graph.ts';
import * as op from '../ops/index.ts';

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

/** Causal self-attention; `allowed` is bool [B or 1, 1, T, T]. x (B, T, D) → (B, T, D). */
function attention(
  x: Tensor,
  allowed: Tensor,
  weight: WeightSource,
  prefix: string,
  config: Gpt2Config,
): Tensor {
  const D = config.n_embd;
  const H = config.n_head;
  const E = D / H;
  const split = (t: Tensor) => op.transpose(op.reshape(t, [x.dims[0], x.dims[1], H, E]), [0, 2, 1, 3]); // (B, H, T, E)
  const [q, k, v] = op.split(conv1d(x, weight, `${prefix}.c_attn`, D, 3 * D), 3, -1).map(split);
  const scores = op.div(op.matmul(q, op.transposeLastTwo(k)), Math.sqrt(E)); // (B, H, T, T)
  const probabilities = op.softmax(F.maskScores(scores, allowed));
  const y = op.transpose(op.matmul(probabilities, v), [0, 2, 1, 3]); // (B, T, H, E)
  return conv1d(op.reshape(y, [x.dims[0], x.dims[1], D]), weight, `${prefix}.c_proj`, D, D);
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
): Tensor {
  const prefix = `transformer.h.${layer}`;
  const afterAttention = op.add(
    x,
    attention(layerNorm(x, weight, `${prefix}.ln_1`, config), allowed, weight, `${prefix}.attn`, config),
  );
  return op.add(
    afterAttention,
    mlp(layerNorm(afterAttention, weight, `${prefix}.ln_2`, config), weight, `${prefix}.mlp`, config),
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
  const { vocab_size: V, n_positions: P, n_embd: D } = config;
  const tokens = inputIds.dims[1];
  if (typeof tokens === 'number' && tokens > P) {
    throw new op.ShapeError(`gpt2Logits: ${tokens} tokens exceed n_positions ${P} (input_ids ${inputIds})`);
  }
  const wte = weight('transformer.wte.weight', [V, D]);
  const wpe = weight('transformer.wpe.weight', [P, D]);
  const positions = positionIds ?? op.unsqueeze(op.arange(inputIds, 1), 0); // (B or 1, T)
  let x = op.add(op.gather(wte, inputIds), op.gather(wpe, positions)); // (B, T, D)
  const causal = op.unsqueeze(F.causalMask(inputIds, 1), [0, 1]); // (1, 1, T, T)
  const allowed = attentionMask ? op.logicalAnd(causal, F.paddingMask(attentionMask)) : causal;
  for (let layer = 0; layer < config.n_layer; layer++) x = gpt2Block(x, allowed, weight, layer, config);
  const final = layerNorm(x, weight, 'transformer.ln_f', config);
  return op.matmul(final, op.transpose(wte)); // tied lm_head, (B, T, V)
}
