// The graph builder: symbolic tensors (dtype + static or named dims) and the nodes that produce them,
// appended in topological order. Ops (engine/ops) add nodes; engine/onnx.ts serializes; autodiff extends.

import { allocate, type DType, type HostTensor, hostTensor, isFloat } from './dtype.ts';
import { type Dim, formatDims, ShapeError } from './ops/dims.ts';

export type { Dim } from './ops/dims.ts';
export { ShapeError } from './ops/dims.ts';

export type Attribute =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'floats'; value: readonly number[] }
  | { kind: 'tensor'; value: HostTensor };

/** Typed attribute constructors: ONNX rejects an int where it expects a float, so the kind is explicit. */
export const attr = {
  int: (value: number): Attribute => ({ kind: 'int', value }),
  float: (value: number): Attribute => ({ kind: 'float', value }),
  string: (value: string): Attribute => ({ kind: 'string', value }),
  ints: (value: readonly number[]): Attribute => ({ kind: 'ints', value }),
  floats: (value: readonly number[]): Attribute => ({ kind: 'floats', value }),
  tensor: (value: HostTensor): Attribute => ({ kind: 'tensor', value }),
};

/** Where a tensor's value comes from; autodiff flows only through 'node' sources. */
export type TensorSource =
  | { kind: 'input' }
  | { kind: 'initializer'; data: HostTensor; frozen: boolean }
  | { kind: 'constant'; data: HostTensor }
  | { kind: 'node'; node: Node; index: number }
  | { kind: 'stopGradient'; of: Tensor };

export class Tensor {
  #name: string;

  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly dtype: DType,
    readonly dims: readonly Dim[],
    readonly source: TensorSource,
    name: string,
  ) {
    this.#name = name;
  }

  /** The ONNX value name; a stopGradient alias shares its origin's value and so its name. */
  get name(): string {
    return this.source.kind === 'stopGradient' ? this.source.of.name : this.#name;
  }

  get rank(): number {
    return this.dims.length;
  }

  get producer(): Node | undefined {
    return this.source.kind === 'node' ? this.source.node : undefined;
  }

  /** Renames a node output (graph.output uses this so outputs need no Identity node). */
  rename(name: string): void {
    this.#name = name;
  }

  toString(): string {
    return `${this.name} ${this.dtype} ${formatDims(this.dims)}`;
  }
}

export interface Node {
  readonly id: number;
  readonly name: string;
  readonly opType: string;
  readonly domain: string;
  /** undefined marks an omitted optional input. */
  readonly inputs: readonly (Tensor | undefined)[];
  readonly outputs: readonly Tensor[];
  readonly attributes: Readonly<Record<string, Attribute>>;
}

export interface OutputSpec {
  dtype: DType;
  dims: readonly Dim[];
}

export interface GraphOutput {
  name: string;
  tensor: Tensor;
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Tensor[] = [];
  /** Named initializers (weights) and deduplicated constants, in creation order. */
  readonly initializers: Tensor[] = [];
  readonly outputs: GraphOutput[] = [];
  readonly #names = new Set<string>();
  readonly #constantsByContent = new Map<string, Tensor>();
  readonly #memo = new Map<string, unknown>();
  #nextTensorId = 0;
  #nextNodeId = 0;

  constructor(readonly name = 'dpoflow') {}

  input(name: string, dtype: DType, dims: readonly Dim[]): Tensor {
    const tensor = this.#newTensor(dtype, dims, { kind: 'input' }, this.#claim(name));
    this.inputs.push(tensor);
    return tensor;
  }

  /** A weight stored in the model. Frozen ones are constants to autodiff. */
  initializer(name: string, data: HostTensor, options: { frozen?: boolean } = {}): Tensor {
    const source: TensorSource = { kind: 'initializer', data, frozen: options.frozen ?? false };
    const tensor = this.#newTensor(data.dtype, data.dims, source, this.#claim(name));
    this.initializers.push(tensor);
    return tensor;
  }

  /** A constant stored in the model; identical contents share one initializer. */
  constant(data: HostTensor): Tensor {
    const key = contentKey(data);
    const existing = this.#constantsByContent.get(key);
    if (existing) return existing;
    const tensor = this.#newTensor(data.dtype, data.dims, { kind: 'constant', data }, this.#fresh('const'));
    this.initializers.push(tensor);
    this.#constantsByContent.set(key, tensor);
    return tensor;
  }

  scalar(value: number, dtype: DType): Tensor {
    return this.constant(filled(dtype, [], value));
  }

  /** A 1-D int64 constant (axes, shapes, pads). */
  int64s(values: readonly number[]): Tensor {
    return this.constant(hostTensor('int64', [values.length], BigInt64Array.from(values, BigInt)));
  }

  /** Declares a graph output. A node output is renamed in place; anything else goes through Identity. */
  output(name: string, tensor: Tensor): void {
    this.#own(tensor, 'output');
    if (this.outputs.some((output) => output.name === name)) {
      throw new ShapeError(`output '${name}' is declared twice`);
    }
    const renameable = tensor.source.kind === 'node' && !this.outputs.some((o) => o.tensor === tensor);
    if (renameable && tensor.name !== name) {
      this.#claim(name);
      this.#names.delete(tensor.name);
      tensor.rename(name);
    }
    const named = renameable
      ? tensor
      : this.addNode('Identity', [tensor], [{ dtype: tensor.dtype, dims: tensor.dims }], {}, [name])[0];
    this.outputs.push({ name, tensor: named });
  }

  /**
   * Appends a node. Ops call this after their own shape inference; `outputNames` is for graph.output only.
   */
  addNode(
    opType: string,
    inputs: readonly (Tensor | undefined)[],
    outputs: readonly OutputSpec[],
    attributes: Record<string, Attribute> = {},
    outputNames?: readonly string[],
    domain = '',
  ): Tensor[] {
    for (const input of inputs) if (input) this.#own(input, opType);
    const id = this.#nextNodeId++;
    const node: Node = { id, name: `n${id}`, opType, domain, inputs: [...inputs], outputs: [], attributes };
    const produced = outputs.map((spec, index) => {
      const name = outputNames?.[index] ? this.#claim(outputNames[index]) : this.#fresh(opType);
      return this.#newTensor(spec.dtype, spec.dims, { kind: 'node', node, index }, name);
    });
    (node.outputs as Tensor[]).push(...produced);
    this.nodes.push(node);
    return produced;
  }

  /** Builds a value once per key (shape tensors, dim scalars) so repeated requests share nodes. */
  memo<T>(key: string, build: () => T): T {
    if (!this.#memo.has(key)) this.#memo.set(key, build());
    return this.#memo.get(key) as T;
  }

  /** A tensor's value when it is a constant or frozen initializer, for build-time folding. */
  constantValue(tensor: Tensor): HostTensor | undefined {
    const source = tensor.source;
    if (source.kind === 'constant') return source.data;
    if (source.kind === 'initializer' && source.frozen) return source.data;
    return undefined;
  }

  #own(tensor: Tensor, where: string): void {
    if (tensor.graph !== this) throw new ShapeError(`${where}: tensor ${tensor} belongs to another graph`);
  }

  #claim(name: string): string {
    if (this.#names.has(name)) throw new ShapeError(`name '${name}' is already used in graph '${this.name}'`);
    this.#names.add(name);
    return name;
  }

  #fresh(prefix: string): string {
    let name = `${prefix}_${this.#nextTensorId}`;
    while (this.#names.has(name)) name = `${name}_`;
    this.#names.add(name);
    return name;
  }

  #newTensor(dtype: DType, dims: readonly Dim[], source: TensorSource, name: string): Tensor {
    return new Tensor(this, this.#nextTensorId++, dtype, [...dims], source, name);
  }
}

/** An identity autodiff does not go through: the same ONNX value, seen as a constant by `grad`. */
export function stopGradient(tensor: Tensor): Tensor {
  const graph = tensor.graph;
  return graph.memo(`stopGradient:${tensor.id}`, () => {
    const alias: TensorSource = { kind: 'stopGradient', of: tensor };
    return new Tensor(graph, -1 - tensor.id, tensor.dtype, tensor.dims, alias, tensor.name);
  });
}

/** Whether autodiff may send gradient into this tensor (float values not cut off from their producers). */
export function isDifferentiable(tensor: Tensor): boolean {
  return (
    isFloat(tensor.dtype) &&
    (tensor.source.kind === 'node' || tensor.source.kind === 'input' || isTrainable(tensor))
  );
}

function isTrainable(tensor: Tensor): boolean {
  return tensor.source.kind === 'initializer' && !tensor.source.frozen;
}

/** A host tensor of the given dims with every element set to `value` (float16 encoded as IEEE half). */
export function filled(dtype: DType, dims: readonly number[], value: number): HostTensor {
  const count = dims.reduce((product, dim) => product * dim, 1);
  const data = allocate(dtype, count);
  if (data instanceof BigInt64Array) data.fill(BigInt(value));
  else if (dtype === 'float16') data.fill(float16Bits(value));
  else if (dtype === 'bool') data.fill(value ? 1 : 0);
  else (data as Float64Array).fill(value);
  return hostTensor(dtype, dims, data);
}

/** IEEE 754 half bits of a number, rounding to nearest even (mantissa overflow carries into the exponent). */
function float16Bits(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  if (magnitude >= 65520) return sign | 0x7c00;
  if (magnitude < 2 ** -14) return sign | roundHalfEven(magnitude * 2 ** 24);
  let exponent = Math.floor(Math.log2(magnitude));
  if (2 ** exponent > magnitude) exponent--;
  return sign | (((exponent + 15) << 10) + roundHalfEven((magnitude / 2 ** exponent - 1) * 1024));
}

function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const rest = x - floor;
  return rest > 0.5 || (rest === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
}

function contentKey(data: HostTensor): string {
  const bytes = Buffer.from(data.data.buffer, data.data.byteOffset, data.data.byteLength);
  return `${data.dtype}|${data.dims.join(',')}|${bytes.toString('base64')}`;
}
