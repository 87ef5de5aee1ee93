// Host side of training: owns the compiled models' sessions, the trainable weights and optimizer state, and
// swaps each step's outputs in as the next step's inputs (transferred to the runtime's worker, not copied).
// Deterministic for the same inputs and thread count; state() / loadState() give exact resume.

import { allocate, elementCount, type HostTensor, hostTensor } from './dtype.ts';
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
  /** This micro-batch's loss. */
  loss: number;
  /** The loss program's metrics for this micro-batch (first element of each). */
  metrics: Record<string, number>;
  /** True when this micro-batch completed an update. */
  applied: boolean;
  /** Pre-clipping global gradient norm of the update; set when applied. */
  gradNorm?: number;
}

/**
 * A training state that cannot be used: it does not fit the compiled models (the offending tensor is named),
 * or it is mid-accumulation, or its weights went to a run that failed.
 */
export class TrainingStateError extends Error {
  override readonly name = 'TrainingStateError';
}

export class TrainingSession {
  #state: TrainingState;
  #accumulators: ParameterSet | undefined;
  #microBatch = 0;
  /** Set when an update run failed after its weights were handed to the runtime: they are gone. */
  #lostTo: Error | undefined;

  private constructor(
    readonly compiled: CompiledTraining,
    private readonly updateSession: Session,
    private readonly accumulateSession: Session | undefined,
    state: TrainingState,
  ) {
    this.#state = state;
  }

  /** Starts from initial weights (zeroed optimizer state, step 0) or from a saved state. */
  static async create(
    compiled: CompiledTraining,
    start: { parameters: ParameterSet } | { state: TrainingState },
    runtime: Partial<RuntimeOptions> = {},
  ): Promise<TrainingSession> {
    const state =
      'state' in start
        ? cloneState(start.state)
        : { step: 0, parameters: cloneParameters(start.parameters), optimizerState: zeroState(compiled) };
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
    this.#checkUsable();
    if (!(Number.isFinite(learningRate) && learningRate >= 0)) {
      throw new RangeError(`learningRate must be a finite number ≥ 0, got ${learningRate}`);
    }
    const accumulationSteps = this.compiled.options.gradientAccumulationSteps;
    const applying = this.#microBatch === accumulationSteps - 1;
    // The update run transfers its feeds to the worker (weights, state and accumulators come back as outputs,
    // so nothing is copied); transfer detaches every feed, so the caller's batch goes as a copy, which the
    // runtime would make anyway. The accumulate run returns no weights, so its feeds are copied, not moved.
    const feeds: Record<string, HostTensor> = applying
      ? Object.fromEntries(Object.entries(batch).map(([name, tensor]) => [name, copyTensor(tensor)]))
      : { ...batch };
    if (accumulationSteps > 1) {
      this.#accumulators ??= zerosLike(this.compiled, names.accumulator);
      for (const [name, tensor] of this.#accumulators) feeds[name] = tensor;
    }
    for (const [name, tensor] of this.#state.parameters) feeds[name] = tensor;

    let outputs: Record<string, HostTensor>;
    if (applying) {
      for (const [name, tensor] of this.#state.optimizerState) feeds[name] = tensor;
      feeds[names.learningRate] = hostTensor('float64', [], Float64Array.of(learningRate));
      feeds[names.step] = hostTensor('float64', [], Float64Array.of(this.#state.step + 1));
      try {
        outputs = await this.updateSession.run(feeds, undefined, { transferFeeds: true });
      } catch (error) {
        // Bad feeds fail before the handoff; a run that fails after it has taken the weights with it.
        if (this.#state.parameters.values().next().value?.data.length === 0) {
          this.#lostTo = error as Error;
        }
        throw error;
      }
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
    const accumulationSteps = this.compiled.options.gradientAccumulationSteps;
    if (accumulationSteps !== 1) {
      throw new Error(
        `step() needs gradientAccumulationSteps = 1 (compiled with ${accumulationSteps}); call microStep() per micro-batch`,
      );
    }
    return this.microStep(batch, options);
  }

  /** A copy of the weights, optimizer state and step: everything a checkpoint needs. */
  state(): TrainingState {
    this.#checkBetweenUpdates('state()');
    return cloneState(this.#state);
  }

  /**
   * Replaces weights, optimizer state and step with a copy of `state` (exact resume from a checkpoint);
   * a partial gradient accumulation is discarded.
   */
  loadState(state: TrainingState): void {
    checkState(this.compiled, state);
    this.#state = cloneState(state);
    this.#accumulators = undefined;
    this.#microBatch = 0;
    this.#lostTo = undefined;
  }

  /** A copy of the trainable weights. */
  parameters(): ParameterSet {
    this.#checkUsable();
    return cloneParameters(this.#state.parameters);
  }

  async release(): Promise<void> {
    await this.updateSession.release();
    await this.accumulateSession?.release();
  }

  #checkUsable(): void {
    if (this.#lostTo) {
      throw new TrainingStateError(
        `the weights went to an update run that failed (${this.#lostTo.message}); ` +
          'loadState() the last state() or checkpoint',
      );
    }
  }

  #checkBetweenUpdates(what: string): void {
    this.#checkUsable();
    if (this.#microBatch !== 0) {
      throw new TrainingStateError(
        `${what} after ${this.#microBatch} of ${this.compiled.options.gradientAccumulationSteps} micro-batches; ` +
          'finish the update first',
      );
    }
  }
}

function zeroState(compiled: CompiledTraining): ParameterSet {
  const state: ParameterSet = new Map();
  for (const suffix of compiled.stateSuffixes) {
    for (const [name, tensor] of zerosLike(compiled, (parameter) => names.state(parameter, suffix))) {
      state.set(name, tensor);
    }
  }
  return state;
}

/** One zero tensor per trainable parameter, named by `nameOf`. */
function zerosLike(compiled: CompiledTraining, nameOf: (parameter: string) => string): ParameterSet {
  return new Map(
    compiled.parameters.map(({ name, dims, dtype }) => [
      nameOf(name),
      { dtype, dims, data: allocate(dtype, elementCount(dims)) } as HostTensor,
    ]),
  );
}

/** Every parameter and state tensor present with the compiled dtype and dims, and nothing else. */
function checkState(compiled: CompiledTraining, state: TrainingState): void {
  if (!Number.isInteger(state.step) || state.step < 0) {
    throw new TrainingStateError(`training state step must be an integer ≥ 0, got ${state.step}`);
  }
  const check = (
    kind: string,
    set: ParameterSet,
    expected: Map<string, { dtype: string; dims: readonly number[] }>,
  ) => {
    for (const [name, { dtype, dims }] of expected) {
      const given = set.get(name);
      if (!given) throw new TrainingStateError(`training state lacks ${kind} ${name} (${dtype}[${dims}])`);
      if (given.dtype !== dtype || given.dims.join() !== dims.join()) {
        throw new TrainingStateError(
          `${kind} ${name}: expected ${dtype}[${dims}], got ${given.dtype}[${given.dims}]`,
        );
      }
      if (given.data.length !== elementCount(dims)) {
        throw new TrainingStateError(`${kind} ${name}: ${given.data.length} values for dims [${dims}]`);
      }
    }
    const unexpected = [...set.keys()].filter((name) => !expected.has(name));
    if (unexpected.length > 0) {
      throw new TrainingStateError(
        `training state has ${kind} tensors the compiled model does not: ${unexpected.join(', ')}`,
      );
    }
  };
  check('parameter', state.parameters, new Map(compiled.parameters.map((p) => [p.name, p])));
  const stateTensors = compiled.parameters.flatMap((p) =>
    compiled.stateSuffixes.map((suffix) => [names.state(p.name, suffix), p] as const),
  );
  check('optimizer state', state.optimizerState, new Map(stateTensors));
}

function cloneState(state: TrainingState): TrainingState {
  return {
    step: state.step,
    parameters: cloneParameters(state.parameters),
    optimizerState: cloneParameters(state.optimizerState),
  };
}

function copyTensor(tensor: HostTensor): HostTensor {
  return { dtype: tensor.dtype, dims: [...tensor.dims], data: tensor.data.slice() } as HostTensor;
}

function takeNext(outputs: Record<string, HostTensor>, keys: Iterable<string>): ParameterSet {
  return new Map([...keys].map((name) => [name, outputs[names.next(name)]]));
}
