// The training loop shared by DPO and SFT (the HF Trainer's semantics on the engine): epochs or max_steps over
// seeded, length-bucketed micro-batches; gradient accumulation with metrics averaged; warmup + schedule; clipping
// inside the compiled step; periodic evaluation; LoRA; checkpoints that resume bit-identically; progress,
// cancellation and a stop on the first non-finite loss before anything is saved. A TrainingTask supplies what
// differs: the loss program and the batches.

import type { TrainingConfig } from '../config/schema.ts';
import type { HostTensor } from '../engine/dtype.ts';
import type { Graph } from '../engine/graph.ts';
import { type ModelWeights, modelWeights, weightShapes } from '../engine/models/causal-lm.ts';
import type { CausalLmSpec } from '../engine/models/hf-config.ts';
import {
  initLoraParameters,
  type LoraSettings,
  loraTargets,
  loraWeights,
  mergeLora,
} from '../engine/models/lora.ts';
import type { ParameterSet } from '../engine/parameters.ts';
import { createSession, type RuntimeOptions, type Session } from '../engine/runtime.ts';
import { compileEvaluation, compileTraining, type LossProgram, names } from '../engine/train-step.ts';
import { TrainingSession } from '../engine/training-session.ts';
import { epochOrder, microBatches } from './batches.ts';
import { learningRateAt, type Schedule, warmupSteps } from './schedule.ts';
import {
  type LogEntry,
  type MetricWindow,
  TRAINER_STATE_VERSION,
  type TrainerCheckpoint,
  type TrainerState,
} from './state.ts';

/** What a kind of training adds to the loop. */
export interface TrainingTask<T> {
  /** The loss (and metrics) on `graph` for the policy's weights. */
  lossProgram(graph: Graph, policy: ModelWeights, dtype: 'float32' | 'float64'): LossProgram;
  /** Feeds for a micro-batch of items. */
  collate(items: readonly T[], dtype: 'float32' | 'float64'): Record<string, HostTensor>;
  /** Tokens an item takes in a batch: what length bucketing sorts by. */
  length(item: T): number;
  /** The metric a progress bar shows beside the loss, e.g. rewards/accuracies. */
  progressMetric?: string;
}

export interface TrainingSetup<T> {
  spec: CausalLmSpec;
  /** The policy's starting weights. */
  parameters: ParameterSet;
  training: TrainingConfig;
  /** Shuffling and LoRA initialisation. */
  seed: number;
  train: readonly T[];
  /** Held-out items for eval_* metrics every eval_steps; none = no evaluation. */
  eval?: readonly T[];
  runtime?: Partial<RuntimeOptions>;
  /** Recorded in checkpoints; a resume under another digest is refused. */
  configDigest?: string;
  /** Continue from this checkpoint instead of the start. */
  resumeFrom?: TrainerCheckpoint;
  /**
   * Called with each checkpoint (every save_steps, at the end, and on cancellation for the steps since the last
   * one); awaited before training goes on.
   */
  saveCheckpoint?: (checkpoint: TrainerCheckpoint) => Promise<void>;
  /** Each logged entry (training every logging_steps, evaluation every eval_steps). */
  onLog?: (entry: LogEntry) => void | Promise<void>;
  /** After every optimizer step: for progress bars and Temporal heartbeats. */
  onStep?: (progress: StepProgress) => void | Promise<void>;
  /** Checked between optimizer steps. */
  signal?: AbortSignal;
}

export interface StepProgress {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  /** The task's progress metric (DPO: rewards/accuracies) of the step's last micro-batch. */
  accuracy?: number;
}

export interface TrainingResult {
  /** The policy's final weights (adapters merged in with LoRA): an HF checkpoint's parameters. */
  policy: ParameterSet;
  /** What was trained: every weight, or the LoRA adapters. */
  trained: ParameterSet;
  state: TrainerState;
}

/** The loss turned NaN or infinite; nothing of this step or later is saved. */
export class TrainingDivergedError extends Error {
  override readonly name = 'TrainingDivergedError';
  constructor(
    readonly step: number,
    what: string,
  ) {
    super(
      `training diverged at step ${step}: ${what} is not finite (lower learning_rate or beta, or check the data); ` +
        'the last checkpoint is left as it was',
    );
  }
}

export class TrainingCancelledError extends Error {
  override readonly name = 'TrainingCancelledError';
  constructor(readonly step: number) {
    super(`training cancelled after step ${step}`);
  }
}

/** A setup that cannot train: empty data, a resume that does not fit, an unsupported setting. */
export class TrainingSetupError extends Error {
  override readonly name = 'TrainingSetupError';
}

export function loraSettings(training: TrainingConfig): LoraSettings | undefined {
  const lora = training.lora;
  if (!lora) return undefined;
  if (lora.lora_dropout > 0) {
    throw new TrainingSetupError(
      `training.lora.lora_dropout: only 0 is supported (adapters are folded into the weights), received ${lora.lora_dropout}`,
    );
  }
  return { r: lora.r, alpha: lora.lora_alpha, targetModules: lora.target_modules };
}

/** Optimizer steps the run takes: max_steps, or ceil(num_train_epochs · micro-batches per epoch / accumulation). */
export function plannedSteps(training: TrainingConfig, trainPairs: number): number {
  if (training.max_steps > 0) return training.max_steps;
  const perEpoch = Math.ceil(trainPairs / training.per_device_train_batch_size);
  return Math.max(
    1,
    Math.ceil((training.num_train_epochs * perEpoch) / training.gradient_accumulation_steps),
  );
}

export async function trainWith<T>(task: TrainingTask<T>, setup: TrainingSetup<T>): Promise<TrainingResult> {
  const { spec, training } = setup;
  if (setup.train.length === 0) throw new TrainingSetupError('the training set has no pairs to train on');
  const dtype = parameterDtype(setup.parameters);
  const lora = loraSettings(training);

  const build = (graph: Graph): LossProgram => {
    const policy = lora
      ? loraWeights(graph, spec, setup.parameters, lora, dtype)
      : modelWeights(graph, spec, {
          parameters: setup.parameters,
          trainable: new Set(weightShapes(spec).keys()),
          dtype,
        });
    return task.lossProgram(graph, policy, dtype);
  };
  const compiled = compileTraining(build, {
    optimizer:
      training.optim === 'sgd'
        ? { type: 'sgd', momentum: 0, weightDecay: training.weight_decay }
        : {
            type: 'adamw',
            beta1: training.adam_beta1,
            beta2: training.adam_beta2,
            epsilon: training.adam_epsilon,
            weightDecay: training.weight_decay,
          },
    maxGradNorm: training.max_grad_norm,
    gradientAccumulationSteps: training.gradient_accumulation_steps,
  });

  const totalSteps = plannedSteps(training, setup.train.length);
  const schedule: Schedule = {
    type: training.lr_scheduler_type,
    peak: training.learning_rate,
    warmup: warmupSteps(training, totalSteps),
    total: totalSteps,
  };
  const resume = setup.resumeFrom;
  let state: TrainerState = resume
    ? checkResume(resume.state, setup, totalSteps)
    : {
        version: TRAINER_STATE_VERSION,
        global_step: 0,
        micro_batches: 0,
        epoch: 0,
        max_steps: totalSteps,
        seed: setup.seed,
        config_digest: setup.configDigest ?? '',
        log_history: [],
        window: emptyWindow(),
      };
  const start = resume
    ? {
        state: {
          step: resume.state.global_step,
          parameters: resume.parameters,
          optimizerState: resume.optimizerState,
        },
      }
    : {
        parameters: lora
          ? initLoraParameters(loraTargets(spec, lora.targetModules), lora, setup.seed, dtype)
          : new Map(compiled.parameters.map((p) => [p.name, setup.parameters.get(p.name)!])),
      };
  const session = await TrainingSession.create(compiled, start, setup.runtime);
  let evaluator: Session | undefined;
  try {
    if (setup.eval?.length) evaluator = await createSession(compileEvaluation(build).model, setup.runtime);
    const perEpoch = Math.ceil(setup.train.length / training.per_device_train_batch_size);
    const epochBatches = new Map<number, number[][]>();
    const batchAt = (position: number) => {
      const epoch = Math.floor(position / perEpoch);
      if (!epochBatches.has(epoch)) {
        epochBatches.clear();
        const order = epochOrder(setup.train.length, { shuffle: training.shuffle, seed: setup.seed, epoch });
        epochBatches.set(
          epoch,
          microBatches(order, (i) => task.length(setup.train[i]), {
            batchSize: training.per_device_train_batch_size,
            bucketing: training.length_bucketing,
          }),
        );
      }
      return epochBatches.get(epoch)![position % perEpoch].map((i) => setup.train[i]);
    };
    const collate = (items: readonly T[]) => task.collate(items, dtype);

    let savedStep = resume?.state.global_step ?? -1;
    const save = async () => {
      if (!setup.saveCheckpoint || savedStep === state.global_step) return;
      const { parameters, optimizerState } = session.state();
      await setup.saveCheckpoint({ state, parameters, optimizerState });
      savedStep = state.global_step;
    };
    while (state.global_step < totalSteps) {
      if (setup.signal?.aborted) {
        // Nothing is lost: the steps since the last save_steps checkpoint are saved before stopping.
        await save();
        throw new TrainingCancelledError(state.global_step);
      }
      const step = state.global_step + 1;
      const learningRate = learningRateAt(schedule, state.global_step);
      const window = structuredClone(state.window);
      let position = state.micro_batches;
      let gradNorm = Number.NaN;
      let lastLoss = 0;
      let lastAccuracy: number | undefined;
      for (let micro = 0; micro < training.gradient_accumulation_steps; micro++) {
        const result = await session.microStep(collate(batchAt(position)), { learningRate });
        position += 1;
        if (!Number.isFinite(result.loss)) throw new TrainingDivergedError(step, 'the loss');
        addToWindow(window, { loss: result.loss, ...result.metrics });
        lastLoss = result.loss;
        lastAccuracy = task.progressMetric ? result.metrics[task.progressMetric] : undefined;
        if (result.applied) gradNorm = result.gradNorm!;
      }
      if (!Number.isFinite(gradNorm)) throw new TrainingDivergedError(step, 'the gradient norm');
      state = {
        ...state,
        global_step: step,
        micro_batches: position,
        epoch: position / perEpoch,
        window: { ...window, grad_norm: gradNorm, learning_rate: learningRate },
      };
      const atEnd = step === totalSteps;
      if (step % training.logging_steps === 0 || atEnd) {
        const entry: LogEntry = { ...windowMeans(state.window), epoch: state.epoch, step };
        state = { ...state, log_history: [...state.log_history, entry], window: emptyWindow() };
        await setup.onLog?.(entry);
      }
      if (evaluator && (step % training.eval_steps === 0 || atEnd)) {
        const entry = await evaluate(evaluator, compiled.metricNames, session.parameters(), setup.eval!, {
          collate,
          length: task.length,
          batchSize: training.per_device_eval_batch_size,
        });
        const logged: LogEntry = { ...entry, epoch: state.epoch, step };
        state = { ...state, log_history: [...state.log_history, logged] };
        await setup.onLog?.(logged);
      }
      if (step % training.save_steps === 0 || atEnd) await save();
      await setup.onStep?.({ step, totalSteps, epoch: state.epoch, loss: lastLoss, accuracy: lastAccuracy });
    }
    const trained = session.parameters();
    const policy = lora
      ? mergeLora(spec, setup.parameters, trained, lora)
      : mergeFull(setup.parameters, trained);
    return { policy, trained, state };
  } finally {
    await evaluator?.release();
    await session.release();
  }
}

/** Held-out metrics over every eval item, each batch weighted by its items, named eval_<metric> as TRL does. */
async function evaluate<T>(
  session: Session,
  metricNames: readonly string[],
  parameters: ParameterSet,
  items: readonly T[],
  options: {
    collate: (items: readonly T[]) => Record<string, HostTensor>;
    length: (item: T) => number;
    batchSize: number;
  },
): Promise<Record<string, number>> {
  const weights = Object.fromEntries(parameters);
  const sums: Record<string, number> = {};
  const order = epochOrder(items.length, { shuffle: false, seed: 0, epoch: 0 });
  const lengthOf = (i: number) => options.length(items[i]);
  for (const batch of microBatches(order, lengthOf, { batchSize: options.batchSize, bucketing: true })) {
    const outputs = await session.run({ ...options.collate(batch.map((i) => items[i])), ...weights });
    const values: Record<string, number> = { loss: Number(outputs[names.loss].data[0]) };
    for (const name of metricNames) values[name] = Number(outputs[names.metric(name)].data[0]);
    for (const [name, value] of Object.entries(values)) sums[name] = (sums[name] ?? 0) + value * batch.length;
  }
  return Object.fromEntries(Object.entries(sums).map(([name, sum]) => [`eval_${name}`, sum / items.length]));
}

function emptyWindow(): MetricWindow {
  return { count: 0, sums: {} };
}

function addToWindow(window: MetricWindow, values: Record<string, number>): void {
  window.count += 1;
  for (const [name, value] of Object.entries(values)) window.sums[name] = (window.sums[name] ?? 0) + value;
}

/** Micro-batch means since the last log; grad_norm and learning_rate are the last step's. */
function windowMeans(window: MetricWindow): Record<string, number> {
  const means: Record<string, number> = {};
  for (const [name, sum] of Object.entries(window.sums)) means[name] = sum / window.count;
  if (window.grad_norm !== undefined) means.grad_norm = window.grad_norm;
  if (window.learning_rate !== undefined) means.learning_rate = window.learning_rate;
  return means;
}

function mergeFull(initial: ParameterSet, trained: ParameterSet): ParameterSet {
  return new Map([...initial].map(([name, tensor]) => [name, trained.get(name) ?? tensor]));
}

function parameterDtype(parameters: ParameterSet): 'float32' | 'float64' {
  const dtypes = new Set([...parameters.values()].map((tensor) => tensor.dtype));
  const [dtype] = dtypes;
  if (dtypes.size !== 1 || (dtype !== 'float32' && dtype !== 'float64')) {
    throw new TrainingSetupError(
      `training needs every weight in float32 (or float64 for checks), got ${[...dtypes].join(', ')}`,
    );
  }
  return dtype;
}

function checkResume<T>(state: TrainerState, setup: TrainingSetup<T>, totalSteps: number): TrainerState {
  const problems: string[] = [];
  if (setup.configDigest !== undefined && state.config_digest !== setup.configDigest)
    problems.push(
      `its config digest ${state.config_digest.slice(0, 12)}… differs from this config's ${setup.configDigest.slice(0, 12)}…`,
    );
  if (state.seed !== setup.seed) problems.push(`its seed ${state.seed} differs from ${setup.seed}`);
  if (state.max_steps !== totalSteps)
    problems.push(`it plans ${state.max_steps} steps, this run ${totalSteps}`);
  if (problems.length > 0)
    throw new TrainingSetupError(
      `cannot resume from the checkpoint at step ${state.global_step}: ${problems.join('; ')}`,
    );
  return state;
}
