// The benchmark cases `npm run bench` times through ONNX Runtime, each the twin of a case in
// bench/torch_peer.py (same shapes, same FLOP formula). Legend: B sequences, T tokens, D width, n matmul size.

import { dpoLossProgram } from '../engine/dpo/step.ts';
import type { HostTensor } from '../engine/dtype.ts';
import * as F from '../engine/functional.ts';
import { Graph } from '../engine/graph.ts';
import { modelWeights } from '../engine/models/causal-lm.ts';
import { Generator } from '../engine/models/generate.ts';
import { type Gpt2Config, gpt2Block, gpt2WeightShapes } from '../engine/models/gpt2.ts';
import { parseModelConfig } from '../engine/models/hf-config.ts';
import { PairScorer } from '../engine/models/scorer.ts';
import { tinyConfig, tinyParameters } from '../engine/models/tiny.ts';
import { serializeModel } from '../engine/onnx.ts';
import * as op from '../engine/ops/index.ts';
import type { ParameterSet } from '../engine/parameters.ts';
import { createSession } from '../engine/runtime.ts';
import { compileTraining, type LossProgram } from '../engine/train-step.ts';
import { TrainingSession } from '../engine/training-session.ts';
import { collatePairs } from '../trainer/batches.ts';
import { seededNormal } from './random.ts';

export interface BenchCase {
  /** One timed iteration; returns the loss for training cases, NaN otherwise. */
  step(): Promise<number>;
  /** Fields derived from the median step time (throughput, GFLOP/s). */
  describe(medianSeconds: number): Record<string, unknown>;
  release(): Promise<void>;
}

export type BenchCaseBuilder = (options: { threads: number }) => Promise<BenchCase>;

const MATMUL_SIZE = 2048;

/** The machine's attainable float32 matmul rate through ONNX Runtime: the yardstick for "fraction of peak". */
const matmulPeak: BenchCaseBuilder = async ({ threads }) => {
  const n = MATMUL_SIZE;
  const graph = new Graph('matmul_peak');
  // `a` is fed (a constant product would be folded away when the session is built); `b` lives in the
  // session and the product is summed, so little but the MatMul crosses the worker boundary.
  const a = graph.input('a', 'float32', [n, n]); // (n, n)
  const b = graph.initializer('b', seededNormal([n, n], 2), { frozen: true }); // (n, n)
  const aValue = seededNormal([n, n], 1);
  graph.output('sum', op.reduceSum(op.matmul(a, b)));
  const session = await createSession(serializeModel(graph), { intraOpThreads: threads, interOpThreads: 1 });
  const flop = 2 * n ** 3;
  return {
    step: async () => {
      await session.run({ a: aValue });
      return Number.NaN;
    },
    describe: (seconds) => ({ shape: [n, n, n], flop, gflops: flop / seconds / 1e9 }),
    release: () => session.release(),
  };
};

// ---- training steps on the standard benchmark model: GPT-2-shaped, 6 layers, D 384, 6 heads, V 8192 ----------
const standardShape = { layers: 6, width: 384, heads: 6, vocabSize: 8192, positions: 256 } as const;
const standardConfig = tinyConfig({ family: 'gpt2', ...standardShape });
const standard = parseModelConfig(standardConfig);
const model = standard.config as Gpt2Config;
const SEQUENCES = 16; // B: 8 DPO pairs, rows 0..7 chosen, 8..15 rejected
const TOKENS = 256; // T
const PROMPT_TOKENS = 64; // the response is positions 64..255
const BETA = 0.1;
const adamw = { type: 'adamw', beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01 } as const;

/** The torch peer's FLOP formula: 6·N·B·T + 12·L·T²·D·B. */
function trainingFlop(parameters: number, layers: number): number {
  return 6 * parameters * SEQUENCES * TOKENS + 12 * layers * TOKENS ** 2 * model.n_embd * SEQUENCES;
}

/** Token ids from a seeded linear congruential generator. */
function randomIds(count: number, vocab: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state % vocab;
  });
}

/** The standard model's seeded initial weights (transformers' init), restricted to `shapes`. */
function initialWeights(shapes: Map<string, number[]>): ParameterSet {
  const all = tinyParameters(standardConfig, 1);
  return new Map([...shapes.keys()].map((name) => [name, all.get(name)!]));
}

async function trainingCase(
  build: (graph: Graph) => LossProgram,
  shapes: Map<string, number[]>,
  batch: Record<string, HostTensor>,
  threads: number,
  describe: (seconds: number, parameters: number) => Record<string, unknown>,
): Promise<BenchCase> {
  const compiled = compileTraining(build, { optimizer: adamw, maxGradNorm: 1, gradientAccumulationSteps: 1 });
  const session = await TrainingSession.create(
    compiled,
    { parameters: initialWeights(shapes) },
    { intraOpThreads: threads, interOpThreads: 1 },
  );
  const parameters = [...shapes.values()].reduce((sum, dims) => sum + dims.reduce((a, b) => a * b, 1), 0);
  return {
    step: async () => (await session.step(batch, { learningRate: 1e-4 })).loss,
    describe: (seconds) => describe(seconds, parameters),
    release: () => session.release(),
  };
}

/** One GPT-2 block, x (B, T, D) → block(x), loss = Σ block(x) ⊙ probe; forward + backward + AdamW. */
const blockStep: BenchCaseBuilder = async ({ threads }) => {
  const layerShapes = new Map(
    [...gpt2WeightShapes(model)].filter(([name]) => name.startsWith('transformer.h.0.')),
  );
  const build = (graph: Graph): LossProgram => {
    const { weight, trainable } = modelWeights(graph, standard, { trainable: new Set(layerShapes.keys()) });
    const x = graph.input('x', 'float32', [SEQUENCES, TOKENS, model.n_embd]); // (B, T, D)
    const probe = graph.input('probe', 'float32', [SEQUENCES, TOKENS, model.n_embd]); // makes dL/dout dense
    const allowed = op.unsqueeze(F.causalMask(x, 1), [0, 1]); // (1, 1, T, T)
    const { out } = gpt2Block(x, allowed, weight, 0, model);
    return { loss: op.reduceSum(op.mul(out, probe)), trainable };
  };
  const batch = {
    x: seededNormal([SEQUENCES, TOKENS, model.n_embd], 3),
    probe: seededNormal([SEQUENCES, TOKENS, model.n_embd], 4),
  };
  return trainingCase(build, layerShapes, batch, threads, (seconds, parameters) => {
    const flop = trainingFlop(parameters, 1);
    return {
      input_shape: [SEQUENCES, TOKENS, model.n_embd],
      flop_per_step: flop,
      gflops: flop / seconds / 1e9,
    };
  });
};

/**
 * The product's DPO step (engine/dpo/step.ts fed by trainer/batches.ts, as trainDpo runs it): 8 pairs of 64
 * prompt + 192 response tokens, sigmoid loss against fixed reference log-probs (the torch peer's model_step).
 */
const modelStep: BenchCaseBuilder = async ({ threads }) => {
  const shapes = gpt2WeightShapes(model);
  const pairs = SEQUENCES / 2;
  const build = (graph: Graph): LossProgram =>
    dpoLossProgram(
      graph,
      standard,
      modelWeights(graph, standard, { trainable: new Set(shapes.keys()) }),
      { lossType: 'sigmoid', beta: BETA },
      'float32',
    );
  const ids = randomIds(SEQUENCES * TOKENS, model.vocab_size, 12345);
  const references = seededNormal([SEQUENCES], 5).data as Float32Array;
  const row = (r: number) => ids.slice(r * TOKENS, (r + 1) * TOKENS);
  const batch = collatePairs(
    Array.from({ length: pairs }, (_, i) => ({
      prompt_input_ids: row(i).slice(0, PROMPT_TOKENS),
      chosen_input_ids: row(i).slice(PROMPT_TOKENS),
      rejected_input_ids: row(pairs + i).slice(PROMPT_TOKENS),
      ref_chosen_logps: references[i],
      ref_rejected_logps: references[pairs + i],
    })),
    { padTokenId: 0, dtype: 'float32', withReference: true },
  );
  return trainingCase(build, shapes, batch, threads, (seconds, parameters) => {
    const withoutPositions = parameters - model.n_positions * model.n_embd;
    const flop = trainingFlop(withoutPositions, model.n_layer);
    return {
      params: parameters,
      pairs_per_s: pairs / seconds,
      tokens_per_s: (SEQUENCES * TOKENS) / seconds,
      flop_per_step: flop,
      gflops: flop / seconds / 1e9,
    };
  });
};

// ---- inference: per-sequence log-probs (the reference cache's work) and batched greedy decoding -----------
/** The torch peer's INFERENCE_SHAPES, with random GPT-2 weights. */
const inferenceShapes = {
  standard: {
    ...standardShape,
    score: [16, 256],
    decode: { batch: 8, prompt: 64, new: 64 },
  },
  gpt2_small: {
    layers: 12,
    width: 768,
    heads: 12,
    vocabSize: 50257,
    positions: 1024,
    score: [4, 256],
    decode: { batch: 4, prompt: 64, new: 32 },
  },
} as const;

function randomGpt2(name: keyof typeof inferenceShapes) {
  const { layers, width, heads, vocabSize, positions } = inferenceShapes[name];
  const rawConfig = tinyConfig({ family: 'gpt2', layers, width, heads, vocabSize, positions });
  return { spec: parseModelConfig(rawConfig), parameters: tinyParameters(rawConfig, 1) };
}

const scoreCase =
  (name: keyof typeof inferenceShapes): BenchCaseBuilder =>
  async ({ threads }) => {
    const { spec, parameters } = randomGpt2(name);
    const [sequences, tokens] = inferenceShapes[name].score;
    const scorer = await PairScorer.create(spec, parameters, { intraOpThreads: threads, interOpThreads: 1 });
    const ids = randomIds(sequences * tokens, spec.config.vocab_size, 7);
    // PairScorer takes pairs: sequences/2 pairs whose chosen and rejected rows are the random sequences.
    const row = (i: number) => ids.slice(i * tokens, (i + 1) * tokens);
    const pairs = Array.from({ length: sequences / 2 }, (_, i) => ({
      prompt_input_ids: row(i).slice(0, PROMPT_TOKENS),
      chosen_input_ids: row(i).slice(PROMPT_TOKENS),
      rejected_input_ids: row(i + sequences / 2).slice(PROMPT_TOKENS),
    }));
    return {
      step: async () => (await scorer.score(pairs))[0].logp_chosen,
      describe: (seconds) => ({
        sequences,
        tokens_per_sequence: tokens,
        tokens_per_s: (sequences * tokens) / seconds,
      }),
      release: () => scorer.release(),
    };
  };

const decodeCase =
  (name: keyof typeof inferenceShapes): BenchCaseBuilder =>
  async ({ threads }) => {
    const { spec, parameters } = randomGpt2(name);
    const { batch, prompt, new: newTokens } = inferenceShapes[name].decode;
    const generator = await Generator.create(spec, parameters, {
      intraOpThreads: threads,
      interOpThreads: 1,
    });
    const ids = randomIds(batch * prompt, spec.config.vocab_size, 9);
    const prompts = Array.from({ length: batch }, (_, i) => ids.slice(i * prompt, (i + 1) * prompt));
    return {
      step: async () => {
        await generator.generate(prompts, { maxNewTokens: newTokens });
        return Number.NaN;
      },
      describe: (seconds) => ({
        batch,
        prompt,
        new: newTokens,
        new_tokens_per_s: (batch * newTokens) / seconds,
      }),
      release: () => generator.release(),
    };
  };

export const benchCases: Record<string, BenchCaseBuilder> = {
  matmul_peak: matmulPeak,
  block_step: blockStep,
  model_step: modelStep,
  score_standard: scoreCase('standard'),
  score_gpt2_small: scoreCase('gpt2_small'),
  decode_standard: decodeCase('standard'),
  decode_gpt2_small: decodeCase('gpt2_small'),
};
