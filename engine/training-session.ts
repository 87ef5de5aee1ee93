// Host side of training: owns the compiled models' sessions, the trainable weights and optimizer state, and
// swaps each step's outputs in as the next step's inputs (transferred to the runtime's worker, not copied).
// Deterministic for the same inputs and thread count; state() / loadState() give exact resume.

import { allocate, type DType, type HostTensor } from './dtype.ts';
import { cloneParameters, type ParameterSet } from './parameters.ts';
import { createSession, type RuntimeOptions, type Session } from './runtime.ts';
import { type CompiledTraining, names } from './train-step.ts';

export interface TrainingState {
  /** Optimizer updates applied so far (the `step` of the next update is this + 1). */
  step: number;
  parameters: ParameterSet;
  /** `<parameter>.<suffix>` → tensor, e.g. `wte.weight.exp_avg`. */
  optimizerState: ParameterSet;
}

export interface MicroStepResult {
  loss: number;
  metrics: Record<string, number>;
  /** True when this micro-batch completed an update. */
  applied: boolean;
  /** Pre-clipping global gradient norm; set when applied. */
  gradNorm?: number;
}

export class TrainingSession {
  #state: TrainingState;
  #accumulators: ParameterSet | undefined;
  #microBatch = 0;

  private constructor(
    readonly compiled: CompiledTraining,
    private readonly updateSession: Session,
    private readonly accumulateSession: Session | undefined,
    state: TrainingState,
  ) {
    this.#state = state;
  }

  /** Starts from initial weights (zeroed optimizer state) or from a saved state. */
  static async create(
    compiled: CompiledTraining,
    start: { parameters: ParameterSet } | { state: TrainingState },
    runtime: Partial<RuntimeOptions> = {},
  ): Promise<TrainingSession> {
    const state =
      'state' in start ? cloneState(start.state) : freshState(compiled, cloneParameters(start.parameters));
    checkState(compiled, state);
    const updateSession = await createSession(compiled.update, runtime);
    const accumulateSession = compiled.accumulate
      ? await createSession(compiled.accumulate, runtime)
      : undefined;
    return new TrainingSession(compiled, updateSession, accumulateSession, state);
  }

  /** Optimizer updates applied so far. */
  get completedSteps(): number {
    return this.#state.step;
  }

  /** One micro-batch; every gradientAccumulationSteps-th call applies the update. */
  async microStep(
    batch: Record<string, HostTensor>,
    { learningRate }: { learningRate: number },
  ): Promise<MicroStepResult> {
    const accumulationSteps = this.compiled.options.gradientAccumulationSteps;
    const applying = this.#microBatch === accumulationSteps - 1;
    // The update run transfers its feeds (weights and state come back as outputs), so the caller's batch
    // is copied first; the accumulate run returns no weights, so its feeds are copied, not transferred.
    const feeds: Record<string, HostTensor> = applying
      ? Object.fromEntries(
          Object.entries(batch).map(([name, tensor]) => [name, { ...tensor, data: tensor.data.slice() }]),
        )
      : { ...batch };
    if (accumulationSteps > 1) {
      this.#accumulators ??= zerosFor(this.compiled, (name) => names.accumulator(name));
      for (const [name, tensor] of this.#accumulators) feeds[name] = tensor;
    }
    for (const [name, tensor] of this.#state.parameters) feeds[name] = tensor;
    let outputs: Record<string, HostTensor>;
    if (applying) {
      for (const [name, tensor] of this.#state.optimizerState) feeds[name] = tensor;
      const dtype = this.compiled.parameters[0].dtype;
      feeds[names.learningRate] = scalar(dtype, learningRate);
      feeds[names.step] = scalar(dtype, this.#state.step + 1);
      outputs = await this.updateSession.run(feeds, undefined, { transferFeeds: true });
      this.#state = {
        step: this.#state.step + 1,
        parameters: takeNext(outputs, this.#state.parameters.keys()),
        optimizerState: takeNext(outputs, this.#state.optimizerState.keys()),
      };
      this.#accumulators = undefined;
      this.#microBatch = 0;
    } else {
      outputs = await this.accumulateSession!.run(feeds);
      this.#accumulators = takeNext(outputs, this.#accumulators!.keys());
      this.#microBatch += 1;
    }
    const metrics = Object.fromEntries(
      this.compiled.metricNames.map((name) => [name, Number(outputs[names.metric(name)].data[0])]),
    );
    return {
      loss: Number(outputs[names.loss].data[0]),
      metrics,
      applied: applying,
      gradNorm: applying ? Number(outputs[names.gradNorm].data[0]) : undefined,
    };
  }

  /** A full update when gradientAccumulationSteps is 1. */
  async step(batch: Record<string, HostTensor>, options: { learningRate: number }): Promise<MicroStepResult> {
    if (this.compiled.options.gradientAccumulationSteps !== 1) {
      throw new Error('step() needs gradientAccumulationSteps = 1; call microStep() per micro-batch');
    }
    return this.microStep(batch, options);
  }

  /** A copy of the weights, optimizer state and step: everything a checkpoint needs. */
  state(): TrainingState {
    if (this.#microBatch !== 0) throw new Error('state() in the middle of gradient accumulation');
    return cloneState(this.#state);
  }

  parameters(): ParameterSet {
    return cloneParameters(this.#state.parameters);
  }

  async release(): Promise<void> {
    await this.updateSession.release();
    await this.accumulateSession?.release();
  }
}

function freshState(compiled: CompiledTraining, parameters: ParameterSet): TrainingState {
  const optimizerState: ParameterSet = new Map();
  for (const suffix of compiled.stateSuffixes) {
    for (const [name, tensor] of zerosFor(compiled, (parameter) => names.state(parameter, suffix))) {
      optimizerState.set(name, tensor);
    }
  }
  return { step: 0, parameters, optimizerState };
}

function zerosFor(compiled: CompiledTraining, nameOf: (parameter: string) => string): ParameterSet {
  return new Map(
    compiled.parameters.map(({ name, dims, dtype }) => [
      nameOf(name),
      {
        dtype,
        dims,
        data: allocate(
          dtype,
          dims.reduce((a, b) => a * b, 1),
        ),
      },
    ]),
  );
}

function checkState(compiled: CompiledTraining, state: TrainingState): void {
  for (const { name, dims, dtype } of compiled.parameters) {
    const given = state.parameters.get(name);
    if (!given) throw new Error(`training state lacks parameter ${name}`);
    if (given.dtype !== dtype || given.dims.join() !== dims.join()) {
      throw new Error(`parameter ${name}: expected ${dtype}[${dims}], got ${given.dtype}[${given.dims}]`);
    }
    for (const suffix of compiled.stateSuffixes) {
      if (!state.optimizerState.has(names.state(name, suffix))) {
        throw new Error(`training state lacks optimizer state ${names.state(name, suffix)}`);
      }
    }
  }
}

function cloneState(state: TrainingState): TrainingState {
  return {
    step: state.step,
    parameters: cloneParameters(state.parameters),
    optimizerState: cloneParameters(state.optimizerState),
  };
}

function takeNext(outputs: Record<string, HostTensor>, keys: Iterable<string>): ParameterSet {
  return new Map([...keys].map((name) => [name, outputs[names.next(name)]]));
}

function scalar(dtype: DType, value: number): HostTensor {
  const data = allocate(dtype, 1);
  data[0] = value as never;
  return { dtype, dims: [], data };
}
