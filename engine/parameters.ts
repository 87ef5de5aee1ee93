// Named model parameters (checkpoint name → HostTensor) with the helpers training needs: count, clone,
// comparison, and saving/loading as safetensors under the checkpoint's own names.
import type { HostTensor } from './dtype.ts';
import {
  decodeSafetensors,
  encodeSafetensors,
  float16ToFloat32,
  type HostConversionOptions,
  hostFromStored,
  SafetensorsFile,
  type StoredTensor,
  storedFromHost,
  writeSafetensorsFile,
} from './safetensors.ts';

/** Parameters by their checkpoint names, e.g. 'transformer.h.0.attn.c_attn.weight'. */
export type ParameterSet = Map<string, HostTensor>;

export interface LoadedParameters {
  parameters: ParameterSet;
  metadata: Record<string, string>;
}

/** Two parameter sets that cannot be compared: a name, dtype or dims differ. */
export class ParameterMismatchError extends Error {
  override readonly name = 'ParameterMismatchError';
}

/** Total number of elements across all tensors. */
export function parameterCount(parameters: ParameterSet): number {
  let count = 0;
  for (const tensor of parameters.values()) count += tensor.data.length;
  return count;
}

/** Deep copy: new buffers, same names, dtypes and dims. */
export function cloneParameters(parameters: ParameterSet): ParameterSet {
  const copy: ParameterSet = new Map();
  for (const [name, tensor] of parameters) {
    copy.set(name, { dtype: tensor.dtype, dims: [...tensor.dims], data: tensor.data.slice() } as HostTensor);
  }
  return copy;
}

function mismatch(a: ParameterSet, b: ParameterSet): string | undefined {
  const onlyA = [...a.keys()].filter((name) => !b.has(name));
  const onlyB = [...b.keys()].filter((name) => !a.has(name));
  if (onlyA.length > 0 || onlyB.length > 0) {
    return `names differ: only in the first [${onlyA.join(', ')}], only in the second [${onlyB.join(', ')}]`;
  }
  for (const [name, left] of a) {
    const right = b.get(name)!;
    if (left.dtype !== right.dtype || left.dims.join(',') !== right.dims.join(',')) {
      return `'${name}' is ${left.dtype}[${left.dims.join(', ')}] vs ${right.dtype}[${right.dims.join(', ')}]`;
    }
  }
  return undefined;
}

/** Values as JS numbers where that is lossless; float16 bits decoded, int64 left as bigint. */
function values(tensor: HostTensor): ArrayLike<number> | BigInt64Array {
  return tensor.dtype === 'float16' ? float16ToFloat32(tensor.data as Uint16Array) : tensor.data;
}

/** Largest |a − b| over all elements. NaN in both at the same place counts as equal, NaN in one as Infinity. */
export function maxAbsDiff(a: ParameterSet, b: ParameterSet): number {
  const problem = mismatch(a, b);
  if (problem) throw new ParameterMismatchError(`cannot compare parameter sets: ${problem}`);
  let largest = 0;
  for (const [name, tensor] of a) {
    const left = values(tensor);
    const right = values(b.get(name)!);
    for (let i = 0; i < left.length; i++) {
      const x = left[i];
      const y = right[i];
      let diff: number;
      if (typeof x === 'bigint') diff = Math.abs(Number(x - (y as bigint)));
      else if (Number.isNaN(x) || Number.isNaN(y))
        diff = Number.isNaN(x) && Number.isNaN(y) ? 0 : Number.POSITIVE_INFINITY;
      else diff = Math.abs(x - (y as number));
      if (diff > largest) largest = diff;
    }
  }
  return largest;
}

/** Same names, dtypes, dims, and values within `tolerance` (exact by default). */
export function parametersEqual(a: ParameterSet, b: ParameterSet, tolerance = 0): boolean {
  return mismatch(a, b) === undefined && maxAbsDiff(a, b) <= tolerance;
}

function toStored(parameters: ParameterSet): Map<string, StoredTensor> {
  return new Map([...parameters].map(([name, tensor]) => [name, storedFromHost(tensor)]));
}

export function parametersToSafetensors(
  parameters: ParameterSet,
  metadata: Record<string, string> = {},
): Uint8Array {
  return encodeSafetensors(toStored(parameters), metadata);
}

/** Tensors alias `bytes` where their alignment allows (see hostFromStored). */
export function parametersFromSafetensors(
  bytes: Uint8Array,
  options: HostConversionOptions & { source?: string } = {},
): LoadedParameters {
  const { tensors, metadata } = decodeSafetensors(bytes, options.source);
  const parameters: ParameterSet = new Map();
  for (const [name, stored] of tensors) parameters.set(name, hostFromStored(name, stored, options));
  return { parameters, metadata };
}

/** Streams the tensors to disk without assembling the file in memory. */
export async function saveParameters(
  path: string,
  parameters: ParameterSet,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeSafetensorsFile(path, toStored(parameters), metadata);
}

/**
 * Loads a safetensors file tensor by tensor (converting each as it arrives, so bf16 → float32 never holds the
 * whole file twice). `names` picks a subset; a name the file lacks is an error listing what it has.
 */
export async function loadParameters(
  path: string,
  options: HostConversionOptions & { names?: readonly string[] } = {},
): Promise<LoadedParameters> {
  const file = await SafetensorsFile.open(path);
  try {
    const parameters: ParameterSet = new Map();
    for (const name of options.names ?? file.names) {
      parameters.set(name, hostFromStored(name, await file.read(name), options));
    }
    return { parameters, metadata: file.header.metadata };
  } finally {
    await file.close();
  }
}
