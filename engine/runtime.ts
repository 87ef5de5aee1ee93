// The one module that owns onnxruntime-node: session options, execution providers, feed checks, and the
// worker thread that keeps native runs off the event loop (so Temporal heartbeats and cancellation still flow).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { type DType, elementCount, type HostData, type HostTensor } from './dtype.ts';

export interface RuntimeOptions {
  /** Where kernels run; 'cuda' fails with a RuntimeError when this onnxruntime-node build cannot load CUDA. */
  executionProvider: 'cpu' | 'cuda';
  /** CUDA device id (ignored on cpu). */
  deviceId: number;
  /** Threads inside one op; 0 = onnxruntime's default (one per core). */
  intraOpThreads: number;
  /** Threads running independent ops in parallel; 0 = onnxruntime's default. */
  interOpThreads: number;
  /** onnxruntime graph rewrites applied when the session is built. */
  graphOptimizationLevel: 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
  /** Run the session in the shared worker thread (true) or on the calling thread (false, blocks it). */
  inWorker: boolean;
  /**
   * onnxruntime's memory-pattern planning. Off by default: measured on the standard DPO training step it raised
   * peak memory from 2.4 to 4.2 GiB and slowed the first runs, for no steady-state speed-up (README, Benchmarks).
   */
  memoryPattern: boolean;
}

export const defaultRuntimeOptions: RuntimeOptions = {
  executionProvider: 'cpu',
  deviceId: 0,
  intraOpThreads: 0,
  interOpThreads: 0,
  graphOptimizationLevel: 'all',
  inWorker: true,
  memoryPattern: false,
};

export type RuntimeErrorCode =
  | 'execution-provider-unavailable'
  | 'model-load-failed'
  | 'invalid-feeds'
  | 'run-failed'
  | 'unsupported-dtype'
  | 'session-released'
  | 'worker-stopped';

/** Every failure of this module; `code` tells bad input (not worth retrying) from a failed run. */
export class RuntimeError extends Error {
  override readonly name = 'RuntimeError';
  constructor(
    readonly code: RuntimeErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A declared model input or output: dtype is onnxruntime's name ('float32', ... or 'non-tensor'). */
export interface ValueSignature {
  name: string;
  dtype: string;
  /** Static sizes are numbers, symbolic ones their names ('' when unnamed). [] = scalar or undeclared. */
  dims: readonly (number | string)[];
}

export interface RunOptions {
  /**
   * Hand the feeds' buffers to the worker instead of copying them: zero copies, but the caller's typed
   * arrays are detached (length 0) afterwards. Use it for tensors the caller no longer needs, e.g. the
   * previous step's outputs fed back in.
   */
  transferFeeds?: boolean;
}

export interface Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputs: readonly ValueSignature[];
  readonly outputs: readonly ValueSignature[];
  /** Runs the model; `fetches` defaults to every output. Built once, run many times. */
  run(
    feeds: Record<string, HostTensor>,
    fetches?: readonly string[],
    options?: RunOptions,
  ): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}

/** Builds a session from ONNX bytes or a file path; reuse it across steps. */
export async function createSession(
  model: Uint8Array | string,
  options: Partial<RuntimeOptions> = {},
): Promise<Session> {
  const resolved = { ...defaultRuntimeOptions, ...options };
  return resolved.inWorker ? WorkerSession.open(model, resolved) : LocalSession.open(model, resolved);
}

/** Stops the shared worker (and every session in it); the next worker session starts a fresh one. */
export async function shutdownRuntime(): Promise<void> {
  await sessionHost?.stop('the runtime was shut down');
  sessionHost = undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Execution providers

const ortBinaryDir = join(
  dirname(createRequire(import.meta.url).resolve('onnxruntime-node')),
  '..',
  'bin',
  'napi-v6',
  process.platform,
  process.arch,
);

/** Checks before building a session so a missing CUDA build is named plainly, not as a dlopen failure. */
function executionProviders(
  options: RuntimeOptions,
): ort.InferenceSession.SessionOptions['executionProviders'] {
  if (options.executionProvider === 'cpu') return ['cpu'];
  const backends = ort.listSupportedBackends();
  const providerLibrary =
    process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  const usable = backends
    .filter(
      (backend) =>
        backend.bundled || (backend.name === 'cuda' && existsSync(join(ortBinaryDir, providerLibrary))),
    )
    .map((backend) => backend.name);
  if (!usable.includes('cuda')) {
    const cudaListed = backends.some((backend) => backend.name === 'cuda');
    throw new RuntimeError(
      'execution-provider-unavailable',
      `execution provider 'cuda' (device ${options.deviceId}) was requested, but this onnxruntime-node ` +
        `${ort.env.versions.common} build can use only: ${usable.join(', ')}. ` +
        (cudaListed
          ? `CUDA support exists but ${providerLibrary} is not installed in ${ortBinaryDir}; ` +
            'reinstall with ONNXRUNTIME_NODE_INSTALL_CUDA=v12 on a machine with CUDA 12.'
          : 'This platform has no CUDA build of onnxruntime-node.'),
    );
  }
  return [{ name: 'cuda', deviceId: options.deviceId }];
}

function sessionOptions(options: RuntimeOptions): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: executionProviders(options),
    graphOptimizationLevel: options.graphOptimizationLevel,
    enableMemPattern: options.memoryPattern,
    // 0 means "onnxruntime decides", which it does when the field is absent.
    ...(options.intraOpThreads > 0 ? { intraOpNumThreads: options.intraOpThreads } : {}),
    ...(options.interOpThreads > 0 ? { interOpNumThreads: options.interOpThreads } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Feed checks: on any problem, list every input with what the model declares and what was given.

function describeDims(dims: readonly (number | string)[]): string {
  return `[${dims.map((dim) => (dim === '' ? '?' : dim)).join(', ')}]`;
}

function feedProblem(input: ValueSignature, feed: HostTensor | undefined): string | undefined {
  if (feed === undefined) return 'missing';
  if (input.dtype === 'non-tensor') return 'given a tensor, but the model expects a non-tensor value';
  if (feed.dtype !== input.dtype) return `dtype ${feed.dtype}, expected ${input.dtype}`;
  // [] is ambiguous in onnxruntime's metadata (scalar or undeclared), so only declared ranks are checked.
  if (input.dims.length > 0 && feed.dims.length !== input.dims.length) {
    return `rank ${feed.dims.length}, expected ${input.dims.length}`;
  }
  const wrongAxis = input.dims.findIndex((dim, axis) => typeof dim === 'number' && dim !== feed.dims[axis]);
  if (wrongAxis >= 0)
    return `axis ${wrongAxis} is ${feed.dims[wrongAxis]}, expected ${input.dims[wrongAxis]}`;
  const needed = elementCount(feed.dims);
  if (feed.data.length !== needed) return `data has ${feed.data.length} elements, dims need ${needed}`;
  return undefined;
}

/** Throws a RuntimeError('invalid-feeds') listing every input when any feed or fetch is wrong. */
function checkFeeds(
  modelLabel: string,
  inputs: readonly ValueSignature[],
  outputs: readonly ValueSignature[],
  feeds: Record<string, HostTensor>,
  fetches: readonly string[] | undefined,
): void {
  const declared = new Set(inputs.map((input) => input.name));
  const unexpected = Object.keys(feeds).filter((name) => !declared.has(name));
  const problems = inputs.map((input) => feedProblem(input, feeds[input.name]));
  const outputNames = new Set(outputs.map((output) => output.name));
  const unknownFetches = (fetches ?? []).filter((name) => !outputNames.has(name));
  if (unexpected.length === 0 && unknownFetches.length === 0 && problems.every((problem) => !problem)) return;

  const given = (feed: HostTensor | undefined) =>
    feed === undefined ? 'nothing' : `${feed.dtype}${describeDims(feed.dims)}`;
  const lines = [`invalid feeds for ${modelLabel}; the model's inputs:`];
  inputs.forEach((input, index) => {
    const mark = problems[index] ? `  <-- ${problems[index]}` : '';
    lines.push(
      `  ${input.name}: ${input.dtype}${describeDims(input.dims)}, given ${given(feeds[input.name])}${mark}`,
    );
  });
  for (const name of unexpected)
    lines.push(`  ${name}: not a model input, given ${given(feeds[name])}  <-- unexpected`);
  if (unknownFetches.length > 0) {
    lines.push(
      `unknown fetches ${unknownFetches.join(', ')}; the model's outputs: ${[...outputNames].join(', ')}`,
    );
  }
  throw new RuntimeError('invalid-feeds', lines.join('\n'));
}

// ---------------------------------------------------------------------------------------------------------
// In-process sessions (also what the worker hosts).

const hostDTypes = new Set<string>(['float32', 'float64', 'float16', 'int64', 'int32', 'bool']);

function signatures(metadata: readonly ort.InferenceSession.ValueMetadata[]): ValueSignature[] {
  return metadata.map((value) =>
    value.isTensor
      ? { name: value.name, dtype: value.type, dims: [...value.shape] }
      : { name: value.name, dtype: 'non-tensor', dims: [] },
  );
}

function modelLabelOf(model: Uint8Array | string): string {
  return typeof model === 'string' ? `model ${model}` : `model of ${model.byteLength} bytes`;
}

function toHostTensor(name: string, value: ort.OnnxValue): HostTensor {
  const tensor = value as ort.Tensor;
  if (!hostDTypes.has(tensor.type)) {
    throw new RuntimeError(
      'unsupported-dtype',
      `output '${name}' has dtype ${tensor.type}, which HostTensor lacks`,
    );
  }
  let data = tensor.data as HostData | ArrayBufferView;
  // Newer runtimes may hand float16 out as Float16Array; HostTensor keeps the raw bits.
  if (tensor.type === 'float16' && !(data instanceof Uint16Array)) {
    data = new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2);
  }
  return { dtype: tensor.type as DType, dims: [...tensor.dims], data: data as HostData } as HostTensor;
}

/** A session on the calling thread: its runs block this thread while they last. */
/** What both kinds of session share: signatures, the released flag and the checks before a run. */
abstract class CheckedSession implements Session {
  protected released = false;

  protected constructor(
    protected readonly label: string,
    readonly inputs: readonly ValueSignature[],
    readonly outputs: readonly ValueSignature[],
  ) {}

  get inputNames(): readonly string[] {
    return this.inputs.map((input) => input.name);
  }

  get outputNames(): readonly string[] {
    return this.outputs.map((output) => output.name);
  }

  /** Fails before any buffer is copied or detached: a released session, or feeds the model does not take. */
  protected checkRun(feeds: Record<string, HostTensor>, fetches?: readonly string[]): void {
    if (this.released)
      throw new RuntimeError('session-released', `the session for ${this.label} was released`);
    checkFeeds(this.label, this.inputs, this.outputs, feeds, fetches);
  }

  abstract run(
    feeds: Record<string, HostTensor>,
    fetches?: readonly string[],
    options?: RunOptions,
  ): Promise<Record<string, HostTensor>>;
  abstract release(): Promise<void>;
}

export class LocalSession extends CheckedSession {
  // Runs not yet finished; release() waits for them, since disposing a session mid-run is undefined.
  private readonly running = new Set<Promise<unknown>>();

  private constructor(
    private readonly session: ort.InferenceSession,
    label: string,
    inputs: readonly ValueSignature[],
    outputs: readonly ValueSignature[],
  ) {
    super(label, inputs, outputs);
  }

  static async open(model: Uint8Array | string, options: RuntimeOptions): Promise<LocalSession> {
    const label = modelLabelOf(model);
    const built = sessionOptions(options);
    let session: ort.InferenceSession;
    try {
      // Two calls because create() is overloaded on the argument's type, not on a union.
      session =
        typeof model === 'string'
          ? await ort.InferenceSession.create(model, built)
          : await ort.InferenceSession.create(model, built);
    } catch (error) {
      const message = (error as Error).message;
      // The CUDA library may be installed yet fail to start (no driver, no device, wrong CUDA version).
      if (options.executionProvider === 'cuda' && /cuda|provider/i.test(message)) {
        throw new RuntimeError(
          'execution-provider-unavailable',
          `execution provider 'cuda' (device ${options.deviceId}) was requested, but onnxruntime could not ` +
            `start it for ${label}: ${message}`,
        );
      }
      throw new RuntimeError(
        'model-load-failed',
        `onnxruntime could not load ${label} on ${options.executionProvider}: ${message}`,
      );
    }
    return new LocalSession(
      session,
      label,
      signatures(session.inputMetadata),
      signatures(session.outputMetadata),
    );
  }

  async run(
    feeds: Record<string, HostTensor>,
    fetches?: readonly string[],
  ): Promise<Record<string, HostTensor>> {
    this.checkRun(feeds, fetches);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, feed] of Object.entries(feeds)) {
      ortFeeds[name] = new ort.Tensor(feed.dtype, feed.data, feed.dims);
    }
    const run = this.session.run(ortFeeds, [...(fetches ?? this.outputNames)]);
    this.running.add(run);
    let results: ort.InferenceSession.ReturnType;
    try {
      results = await run;
    } catch (error) {
      throw new RuntimeError(
        'run-failed',
        `onnxruntime run of ${this.label} failed: ${(error as Error).message}`,
      );
    } finally {
      this.running.delete(run);
    }
    const outputs: Record<string, HostTensor> = {};
    for (const [name, value] of Object.entries(results)) outputs[name] = toHostTensor(name, value);
    return outputs;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await Promise.allSettled(this.running);
    await this.session.release();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Worker sessions: one worker per process hosts every session; messages carry ids.

/** Messages to the worker (runtime-worker.ts); the protocol types and helpers below are exported for it. */
export type HostRequest =
  | { kind: 'open'; id: number; model: Uint8Array | string; options: RuntimeOptions }
  | {
      kind: 'run';
      id: number;
      session: number;
      feeds: Record<string, HostTensor>;
      fetches?: readonly string[];
    }
  | { kind: 'release'; id: number; session: number }
  | { kind: 'shutdown'; id: number };

type UnnumberedRequest = HostRequest extends infer R
  ? R extends HostRequest
    ? Omit<R, 'id'>
    : never
  : never;

export interface OpenedSession {
  session: number;
  inputs: ValueSignature[];
  outputs: ValueSignature[];
}

/** Replies from the worker; `result` depends on the request's kind. */
export type HostReply =
  | { id: number; ok: true; result: OpenedSession | Record<string, HostTensor> | null }
  | { id: number; ok: false; error: { code: RuntimeErrorCode; message: string } };

/**
 * Typed arrays to send and the buffers to transfer. A view into a larger buffer is sliced first, because
 * structured cloning would copy the whole buffer; a SharedArrayBuffer is shared as it is.
 */
export function packForTransfer(
  tensors: Record<string, HostTensor>,
  ownBuffers: boolean,
): { tensors: Record<string, HostTensor>; transfer: ArrayBuffer[] } {
  const packed: Record<string, HostTensor> = {};
  const transfer = new Set<ArrayBuffer>();
  for (const [name, tensor] of Object.entries(tensors)) {
    let data = tensor.data as HostData;
    if (data.buffer instanceof SharedArrayBuffer) {
      packed[name] = tensor;
      continue;
    }
    const wholeBuffer = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    if (!ownBuffers || !wholeBuffer) data = data.slice();
    transfer.add(data.buffer as ArrayBuffer);
    packed[name] = { dtype: tensor.dtype, dims: tensor.dims, data } as HostTensor;
  }
  return { tensors: packed, transfer: [...transfer] };
}

const workerEntry = new URL(
  import.meta.url.endsWith('.ts') ? './runtime-worker.ts' : './runtime-worker.js',
  import.meta.url,
);

// Worker threads do not inherit tsx's loader hooks from `--import tsx` (Node 20), so a small bootstrap
// registers tsx inside the worker before importing the TypeScript entry. It uses only dynamic import() because
// eval'd code is CommonJS or ESM depending on the parent's --input-type.
const bootstrap = `
import('node:worker_threads').then(({ workerData }) => {
const ready = workerData.tsxApi ? import(workerData.tsxApi).then((tsx) => tsx.register()) : Promise.resolve();
return ready.then(() => import(workerData.entry)).then((module) => module.serveSessions());
});
`;

/**
 * Shared with the worker: BUSY counts requests it is handling, EXITING tells it to start no more. On
 * process exit the main thread waits (synchronously, the only way in an 'exit' handler) until the worker is
 * back in JavaScript, because a worker torn down during a native onnxruntime call aborts the process.
 */
export const exitGuard = { BUSY: 0, EXITING: 1 } as const;
const exitWaitMs = 120_000;

interface Pending {
  resolve: (result: HostReply & { ok: true }) => void;
  reject: (error: Error) => void;
}

class SessionHost {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private stoppedReason: string | undefined;
  private readonly exited: Promise<void>;
  private readonly guard = new Int32Array(new SharedArrayBuffer(8));

  constructor() {
    const tsxApi = workerEntry.pathname.endsWith('.ts') ? import.meta.resolve('tsx/esm/api') : undefined;
    this.worker = new Worker(bootstrap, {
      eval: true,
      workerData: { entry: workerEntry.href, tsxApi, guard: this.guard },
    });
    process.on('exit', this.waitForNativeCalls);
    // An idle worker must never keep the process alive; it is ref'd only while requests are in flight.
    this.worker.unref();
    this.worker.on('message', (reply: HostReply) => this.settle(reply));
    this.worker.on('error', (error) => this.fail(`the runtime worker crashed: ${error.message}`));
    this.worker.on('messageerror', (error) =>
      this.fail(`a reply from the runtime worker was unreadable: ${error}`),
    );
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (exitCode) => {
        process.off('exit', this.waitForNativeCalls);
        this.fail(`the runtime worker exited with code ${exitCode}`);
        resolve();
      }),
    );
  }

  get alive(): boolean {
    return this.stoppedReason === undefined;
  }

  request<R>(message: UnnumberedRequest, transfer: ArrayBuffer[] = []): Promise<R> {
    if (this.stoppedReason) return Promise.reject(new RuntimeError('worker-stopped', this.stoppedReason));
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, { resolve: (reply) => resolve(reply.result as R), reject });
      if (this.pending.size === 1) this.worker.ref();
      this.worker.postMessage({ ...message, id }, transfer);
    });
  }

  /**
   * Rejects what is in flight at once, then lets the worker finish its current native run, release its
   * sessions and exit. Never worker.terminate(): terminating while onnxruntime is inside a run aborts the
   * whole process (the binding throws a C++ exception into a dying environment).
   */
  async stop(reason: string): Promise<void> {
    const running = this.alive;
    this.fail(reason);
    if (running) {
      this.worker.ref(); // the process waits for a clean exit
      this.worker.postMessage({ kind: 'shutdown', id: 0 } satisfies HostRequest);
    }
    await this.exited;
  }

  private readonly waitForNativeCalls = (): void => {
    Atomics.store(this.guard, exitGuard.EXITING, 1);
    const deadline = Date.now() + exitWaitMs;
    let busy = Atomics.load(this.guard, exitGuard.BUSY);
    while (busy > 0 && Date.now() < deadline) {
      Atomics.wait(this.guard, exitGuard.BUSY, busy, deadline - Date.now());
      busy = Atomics.load(this.guard, exitGuard.BUSY);
    }
  };

  private settle(reply: HostReply): void {
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if (reply.ok) pending.resolve(reply);
    else pending.reject(new RuntimeError(reply.error.code, reply.error.message));
  }

  /** Rejects everything in flight; the first reason sticks, later requests get it too. */
  private fail(reason: string): void {
    this.stoppedReason ??= reason;
    if (sessionHost === this) sessionHost = undefined;
    for (const pending of this.pending.values()) pending.reject(new RuntimeError('worker-stopped', reason));
    this.pending.clear();
    this.worker.unref();
  }
}

let sessionHost: SessionHost | undefined;

function currentHost(): SessionHost {
  sessionHost ??= new SessionHost();
  return sessionHost;
}

/** A session living in the shared worker; runs leave the calling thread free. */
class WorkerSession extends CheckedSession {
  private constructor(
    private readonly host: SessionHost,
    private readonly id: number,
    label: string,
    inputs: readonly ValueSignature[],
    outputs: readonly ValueSignature[],
  ) {
    super(label, inputs, outputs);
  }

  static async open(model: Uint8Array | string, options: RuntimeOptions): Promise<WorkerSession> {
    const host = currentHost();
    // Bytes are copied once and that copy transferred; the caller keeps its model. (`new Uint8Array(view)`
    // always copies: a Node Buffer's slice() is a view, and its buffer may be a shared pool.)
    const sent = typeof model === 'string' ? model : new Uint8Array(model);
    const transfer = typeof sent === 'string' ? [] : [sent.buffer as ArrayBuffer];
    const opened = await host.request<OpenedSession>({ kind: 'open', model: sent, options }, transfer);
    return new WorkerSession(host, opened.session, modelLabelOf(model), opened.inputs, opened.outputs);
  }

  async run(
    feeds: Record<string, HostTensor>,
    fetches?: readonly string[],
    options: RunOptions = {},
  ): Promise<Record<string, HostTensor>> {
    this.checkRun(feeds, fetches); // here too, so bad feeds fail before any buffer is detached
    const packed = packForTransfer(feeds, options.transferFeeds ?? false);
    return this.host.request(
      { kind: 'run', session: this.id, feeds: packed.tensors, fetches },
      packed.transfer,
    );
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    // A stopped worker already took its sessions with it.
    if (this.host.alive) await this.host.request({ kind: 'release', session: this.id });
  }
}
