// Serializes a Graph to an ONNX ModelProto (opset 18, IR 8) through onnx-proto, pruning nodes no output
// needs; large initializers can go to an ONNX external-data side file next to the model.

import { open, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import onnxProto from 'onnx-proto';
import { type DType, type HostTensor, onnxDataType } from './dtype.ts';
import type { Attribute, Graph, Node, Tensor } from './graph.ts';
import { ShapeError } from './ops/dims.ts';

const { onnx } = onnxProto;

/** Opset 18: LayerNormalization (17+), Reduce* with axes as inputs, Pad with axes, Split with num_outputs. */
export const OPSET_VERSION = 18;
/** The IR version that ships with opset 18 (ONNX 1.13). */
export const IR_VERSION = 8;
/** Protobuf messages cannot exceed 2 GiB; stay clear of it with inline initializers. */
export const INLINE_INITIALIZER_LIMIT = 1.8 * 2 ** 30;

export interface ExternalDataOptions {
  /** Side file name, resolved by ONNX Runtime relative to the model file's folder. */
  fileName: string;
  /** Initializers of at least this many bytes go to the side file (ONNX's own default is 1024). */
  thresholdBytes?: number;
}

export interface SavedModel {
  modelPath: string;
  /** Absolute path of the side file, when any initializer went there. */
  externalDataPath?: string;
  externalTensorCount: number;
}

/**
 * The model as ONNX bytes with every initializer inline; fails when they pass `inlineLimitBytes`
 * (default: what one protobuf can hold), pointing at saveModel's external data.
 */
export function serializeModel(graph: Graph, options: { inlineLimitBytes?: number } = {}): Uint8Array {
  const initializers = usedInitializers(graph, liveNodes(graph));
  const inlineBytes = initializers.reduce((total, tensor) => total + hostData(tensor).data.byteLength, 0);
  if (inlineBytes > (options.inlineLimitBytes ?? INLINE_INITIALIZER_LIMIT)) {
    throw new ShapeError(
      `graph '${graph.name}': ${inlineBytes} bytes of initializers are too many to keep inline; ` +
        'save it with saveModel(graph, path, { externalData: { fileName } })',
    );
  }
  return encode(graph, () => undefined);
}

/**
 * Writes the model to `modelPath`. With `externalData`, initializers of at least `thresholdBytes` are written
 * to a side file in the same folder (offsets aligned to 4 KiB so ONNX Runtime can map them); the model
 * keeps only their locations. Required once initializers pass INLINE_INITIALIZER_LIMIT.
 */
export async function saveModel(
  graph: Graph,
  modelPath: string,
  options: { externalData?: ExternalDataOptions } = {},
): Promise<SavedModel> {
  const external = options.externalData;
  if (!external) {
    await writeFile(modelPath, serializeModel(graph));
    return { modelPath, externalTensorCount: 0 };
  }
  if (basename(external.fileName) !== external.fileName) {
    throw new ShapeError(
      `externalData.fileName '${external.fileName}' must be a bare file name next to the model`,
    );
  }
  const threshold = external.thresholdBytes ?? 1024;
  const externalDataPath = join(dirname(modelPath), external.fileName);
  const side = await open(externalDataPath, 'w');
  const placements = new Map<Tensor, { offset: number; length: number }>();
  try {
    let offset = 0;
    for (const tensor of usedInitializers(graph, liveNodes(graph))) {
      const bytes = rawBytes(hostData(tensor));
      if (bytes.byteLength < threshold) continue;
      offset = Math.ceil(offset / 4096) * 4096;
      await side.write(bytes, 0, bytes.byteLength, offset);
      placements.set(tensor, { offset, length: bytes.byteLength });
      offset += bytes.byteLength;
    }
  } finally {
    await side.close();
  }
  const model = encode(graph, (tensor) => {
    const placement = placements.get(tensor);
    if (!placement) return undefined;
    return [
      { key: 'location', value: external.fileName },
      { key: 'offset', value: String(placement.offset) },
      { key: 'length', value: String(placement.length) },
    ];
  });
  await writeFile(modelPath, model);
  return { modelPath, externalDataPath, externalTensorCount: placements.size };
}

type ExternalEntries = { key: string; value: string }[] | undefined;

function encode(graph: Graph, externalEntries: (tensor: Tensor) => ExternalEntries): Uint8Array {
  const nodes = liveNodes(graph);
  const initializers = usedInitializers(graph, nodes).map((tensor) => {
    const data = hostData(tensor);
    const entries = externalEntries(tensor);
    if (!entries) return tensorProto(tensor.name, data);
    return {
      name: tensor.name,
      dims: [...data.dims],
      dataType: onnxDataType[data.dtype],
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: entries,
    };
  });
  const model: onnxProto.onnx.IModelProto = {
    irVersion: IR_VERSION,
    producerName: 'dpoflow',
    opsetImport: [{ domain: '', version: OPSET_VERSION }],
    graph: {
      name: graph.name,
      node: nodes.map(nodeProto),
      initializer: initializers,
      input: graph.inputs.map((tensor) => valueInfo(tensor.name, tensor)),
      output: graph.outputs.map((output) => valueInfo(output.name, output.tensor)),
    },
  };
  return onnx.ModelProto.encode(model).finish();
}

/** Nodes some graph output depends on, in their (topological) creation order. */
function liveNodes(graph: Graph): Node[] {
  if (graph.outputs.length === 0) throw new ShapeError(`graph '${graph.name}' has no outputs`);
  const needed = new Set<string>(graph.outputs.map((output) => output.tensor.name));
  const live: Node[] = [];
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i];
    if (!node.outputs.some((output) => needed.has(output.name))) continue;
    live.push(node);
    for (const input of node.inputs) if (input) needed.add(input.name);
  }
  return live.reverse();
}

function usedInitializers(graph: Graph, nodes: readonly Node[]): Tensor[] {
  const used = new Set<string>(graph.outputs.map((output) => output.tensor.name));
  for (const node of nodes) for (const input of node.inputs) if (input) used.add(input.name);
  return graph.initializers.filter((tensor) => used.has(tensor.name));
}

function hostData(tensor: Tensor): HostTensor {
  const source = tensor.source;
  if (source.kind !== 'initializer' && source.kind !== 'constant') throw new Error(`${tensor} holds no data`);
  return source.data;
}

function rawBytes(data: HostTensor): Uint8Array {
  return new Uint8Array(data.data.buffer, data.data.byteOffset, data.data.byteLength);
}

function tensorProto(name: string, data: HostTensor): onnxProto.onnx.ITensorProto {
  return { name, dims: [...data.dims], dataType: onnxDataType[data.dtype], rawData: rawBytes(data) };
}

function valueInfo(name: string, tensor: { dtype: DType; dims: readonly (number | string)[] }) {
  const dim = tensor.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return { name, type: { tensorType: { elemType: onnxDataType[tensor.dtype], shape: { dim } } } };
}

const { AttributeType } = onnx.AttributeProto;

function nodeProto(node: Node): onnxProto.onnx.INodeProto {
  return {
    name: node.name,
    opType: node.opType,
    domain: node.domain,
    input: inputNames(node),
    output: node.outputs.map((output) => output.name),
    attribute: Object.entries(node.attributes).map(([name, value]) => attributeProto(name, value)),
  };
}

/** An omitted optional input is the empty name, as ONNX specifies; trailing ones are dropped. */
function inputNames(node: Node): string[] {
  const names = node.inputs.map((input) => input?.name ?? '');
  while (names.length > 0 && names[names.length - 1] === '') names.pop();
  return names;
}

function attributeProto(name: string, attribute: Attribute): onnxProto.onnx.IAttributeProto {
  switch (attribute.kind) {
    case 'int':
      return { name, type: AttributeType.INT, i: attribute.value };
    case 'float':
      return { name, type: AttributeType.FLOAT, f: attribute.value };
    case 'string':
      return { name, type: AttributeType.STRING, s: new TextEncoder().encode(attribute.value) };
    case 'ints':
      return { name, type: AttributeType.INTS, ints: [...attribute.value] };
    case 'floats':
      return { name, type: AttributeType.FLOATS, floats: [...attribute.value] };
    case 'tensor':
      return { name, type: AttributeType.TENSOR, t: tensorProto('', attribute.value) };
  }
}
