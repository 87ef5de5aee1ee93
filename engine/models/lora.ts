// LoRA (Hu et al., 2021) as a weight transform: a targeted linear weight W becomes W + (α/r)·B·A, with A (r, in)
// and B (out, r) the only trainable tensors and W a frozen initializer inside the session. Expressing the adapter
// through the WeightSource leaves the model files untouched; building B·A costs out·in·r per step, small beside
// the activations' matmuls. Names follow PEFT: `<module>.lora_A.weight`, `<module>.lora_B.weight`.

import { type HostTensor, hostTensor } from '../dtype.ts';
import type { Graph, Tensor } from '../graph.ts';
import * as op from '../ops/index.ts';
import type { ParameterSet } from '../parameters.ts';
import { mulberry32 } from '../random.ts';
import { modelWeights, type WeightSource, weightShapes } from './causal-lm.ts';
import type { CausalLmSpec } from './hf-config.ts';

export interface LoraSettings {
  r: number;
  alpha: number;
  /** Module names or suffixes, as PEFT's target_modules: 'q_proj' matches 'model.layers.0.self_attn.q_proj'. */
  targetModules: readonly string[];
}

export interface LoraTarget {
  module: string; // e.g. 'model.layers.0.self_attn.q_proj'
  inFeatures: number;
  outFeatures: number;
  /** GPT-2's Conv1D stores W as (in, out); nn.Linear as (out, in). */
  fanInFanOut: boolean;
}

export class LoraError extends Error {
  override readonly name = 'LoraError';
}

export const loraNames = {
  a: (module: string) => `${module}.lora_A.weight`,
  b: (module: string) => `${module}.lora_B.weight`,
};

/** The 2-D weights whose module matches a target; a target matching nothing is an error naming the options. */
export function loraTargets(spec: CausalLmSpec, targetModules: readonly string[]): LoraTarget[] {
  const linear = [...weightShapes(spec)].filter(
    ([name, dims]) => name.endsWith('.weight') && dims.length === 2 && !isEmbedding(name),
  );
  const moduleOf = (name: string) => name.slice(0, -'.weight'.length);
  const matches = (module: string, target: string) => module === target || module.endsWith(`.${target}`);
  for (const target of targetModules) {
    if (!linear.some(([name]) => matches(moduleOf(name), target))) {
      const kinds = [...new Set(linear.map(([name]) => moduleOf(name).split('.').at(-1)))];
      throw new LoraError(
        `lora target_modules: "${target}" matches no linear layer of ${spec.architecture} (it has ${kinds.join(', ')})`,
      );
    }
  }
  return linear
    .filter(([name]) => targetModules.some((target) => matches(moduleOf(name), target)))
    .map(([name, [rows, columns]]) => {
      const fanInFanOut = spec.family === 'gpt2';
      return {
        module: moduleOf(name),
        inFeatures: fanInFanOut ? rows : columns,
        outFeatures: fanInFanOut ? columns : rows,
        fanInFanOut,
      };
    });
}

function isEmbedding(name: string): boolean {
  return /(^|\.)(wte|wpe|embed_tokens|lm_head)\.weight$/.test(name);
}

/**
 * PEFT's initialisation: A ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5), B = 0, so training starts at the
 * base model exactly.
 */
export function initLoraParameters(
  targets: readonly LoraTarget[],
  settings: LoraSettings,
  seed: number,
  dtype: 'float32' | 'float64',
): ParameterSet {
  const uniform = mulberry32(seed);
  const parameters: ParameterSet = new Map();
  const make = (dims: number[], fill: () => number): HostTensor => {
    const data =
      dtype === 'float64' ? new Float64Array(dims[0] * dims[1]) : new Float32Array(dims[0] * dims[1]);
    for (let i = 0; i < data.length; i++) data[i] = fill();
    return hostTensor(dtype, dims, data);
  };
  for (const { module, inFeatures, outFeatures } of targets) {
    const bound = 1 / Math.sqrt(inFeatures);
    parameters.set(
      loraNames.a(module),
      make([settings.r, inFeatures], () => (2 * uniform() - 1) * bound),
    );
    parameters.set(
      loraNames.b(module),
      make([outFeatures, settings.r], () => 0),
    );
  }
  return parameters;
}

/**
 * The policy's weights with adapters: every base weight frozen inside the session, A and B of each target as
 * trainable graph inputs.
 */
export function loraWeights(
  graph: Graph,
  spec: CausalLmSpec,
  base: ParameterSet,
  settings: LoraSettings,
  dtype: 'float32' | 'float64',
): { weight: WeightSource; trainable: Tensor[] } {
  const targets = new Map(loraTargets(spec, settings.targetModules).map((t) => [`${t.module}.weight`, t]));
  const frozen = modelWeights(graph, spec, { parameters: base, dtype }).weight;
  const trainable: Tensor[] = [];
  const scale = settings.alpha / settings.r;
  const weight: WeightSource = (name, dims) => {
    const target = targets.get(name);
    if (!target) return frozen(name, dims);
    return graph.memo(`lora:${name}`, () => {
      const a = graph.input(loraNames.a(target.module), dtype, [settings.r, target.inFeatures]);
      const b = graph.input(loraNames.b(target.module), dtype, [target.outFeatures, settings.r]);
      trainable.push(a, b);
      const delta = op.mul(op.matmul(b, a), scale); // (out, in)
      return op.add(frozen(name, dims), target.fanInFanOut ? op.transpose(delta) : delta);
    });
  };
  return { weight, trainable };
}

/** Base weights with each adapter folded in (W + (α/r)·B·A, in float64 arithmetic): a plain HF checkpoint. */
export function mergeLora(
  spec: CausalLmSpec,
  base: ParameterSet,
  adapters: ParameterSet,
  settings: LoraSettings,
): ParameterSet {
  const merged: ParameterSet = new Map(base);
  const scale = settings.alpha / settings.r;
  for (const { module, inFeatures, outFeatures, fanInFanOut } of loraTargets(spec, settings.targetModules)) {
    const a = adapters.get(loraNames.a(module))?.data as Float32Array | Float64Array | undefined;
    const b = adapters.get(loraNames.b(module))?.data as Float32Array | Float64Array | undefined;
    if (!a || !b) throw new LoraError(`adapters lack ${module}'s lora_A or lora_B`);
    const weight = base.get(`${module}.weight`)!;
    const data = (weight.data as Float32Array | Float64Array).slice();
    for (let o = 0; o < outFeatures; o++) {
      for (let i = 0; i < inFeatures; i++) {
        let sum = 0;
        for (let k = 0; k < settings.r; k++) sum += b[o * settings.r + k] * a[k * inFeatures + i];
        data[fanInFanOut ? i * outFeatures + o : o * inFeatures + i] += scale * sum;
      }
    }
    merged.set(`${module}.weight`, { ...weight, data } as HostTensor);
  }
  return merged;
}
