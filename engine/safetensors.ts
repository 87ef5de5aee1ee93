// The safetensors format (Hugging Face): u64 little-endian header length, a JSON header, then the tensors'
// raw little-endian bytes back to back. Bytes and files, validated header, streaming write, per-tensor read.
import { open, rename } from 'node:fs/promises';
import { endianness } from 'node:os';
import { type DType, elementCount, type HostData, type HostTensor } from './dtype.ts';

// Typed-array views below reinterpret little-endian bytes in place.
if (endianness() !== 'LE') throw new Error('engine/safetensors.ts assumes a little-endian host');

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'BOOL';

export const safetensorsItemSize: Record<SafetensorsDType, number> = {
  F64: 8,
  I64: 8,
  F32: 4,
  I32: 4,
  F16: 2,
  BF16: 2,
  U8: 1,
  BOOL: 1,
};

// The reference writer orders tensors by dtype, widest first (its enum order), then by name, so each
// tensor's offset is a multiple of its item size once the header is padded to 8 bytes.
const writeOrder: SafetensorsDType[] = ['I64', 'F64', 'F32', 'I32', 'BF16', 'F16', 'U8', 'BOOL'];

/** The reference implementation refuses larger headers; so do we, which also stops garbage lengths. */
const maxHeaderBytes = 100_000_000;

/** One tensor as stored: its dtype, shape and raw little-endian bytes. */
export interface StoredTensor {
  dtype: SafetensorsDType;
  shape: readonly number[];
  bytes: Uint8Array;
}

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range within the data section (after the header). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Entries in data order. */
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  /** Offset of the data section from the start of the file: 8 + header length. */
  dataStart: number;
}

export interface SafetensorsContents {
  tensors: Map<string, StoredTensor>;
  metadata: Record<string, string>;
}

/** A malformed file or tensor; `source` is the file (or a label for bytes), `tensor` the entry at fault. */
export class SafetensorsError extends Error {
  override readonly name = 'SafetensorsError';
  constructor(
    readonly source: string,
    readonly tensor: string | undefined,
    problem: string,
  ) {
    super(`${source}: ${tensor === undefined ? '' : `tensor '${tensor}': `}${problem}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Header

function isDType(value: unknown): value is SafetensorsDType {
  return typeof value === 'string' && Object.hasOwn(safetensorsItemSize, value);
}

function isSize(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Reads the 8-byte header length, checking it against the file's size. */
export function parseHeaderLength(prefix: Uint8Array, fileBytes: number, source: string): number {
  if (fileBytes < 8) {
    throw new SafetensorsError(
      source,
      undefined,
      `truncated: ${fileBytes} bytes, too short for the 8-byte header length`,
    );
  }
  const length = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(fileBytes - 8)) {
    throw new SafetensorsError(
      source,
      undefined,
      `header length ${length} is beyond the file size (${fileBytes} bytes)`,
    );
  }
  if (length > BigInt(maxHeaderBytes)) {
    throw new SafetensorsError(
      source,
      undefined,
      `header length ${length} exceeds the ${maxHeaderBytes}-byte limit`,
    );
  }
  return Number(length);
}

function parseEntry(source: string, name: string, value: unknown): SafetensorsEntry {
  const fail = (problem: string): never => {
    throw new SafetensorsError(source, name, problem);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return fail('entry is not an object');
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isDType(dtype)) return fail(`unknown dtype ${JSON.stringify(dtype)}; known: ${writeOrder.join(', ')}`);
  if (!Array.isArray(shape) || !shape.every(isSize))
    return fail(`shape ${JSON.stringify(shape)} is not a list of sizes`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSize)) {
    return fail(`data_offsets ${JSON.stringify(offsets)} is not a pair of byte offsets`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) return fail(`data_offsets [${begin}, ${end}] are out of range: begin after end`);
  const expected = elementCount(shape) * safetensorsItemSize[dtype];
  if (end - begin !== expected) {
    return fail(
      `byte length ${end - begin} does not match shape [${shape.join(', ')}] of ${dtype} (${expected} bytes)`,
    );
  }
  return { name, dtype, shape, begin, end };
}

/** Parses and validates the JSON header against a data section of `dataBytes` bytes. */
export function parseHeader(
  json: Uint8Array,
  dataStart: number,
  dataBytes: number,
  source: string,
): SafetensorsHeader {
  let text: string;
  let parsed: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SafetensorsError(source, undefined, `header is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SafetensorsError(source, undefined, 'header is not a JSON object');
  }

  const { __metadata__: rawMetadata, ...rawEntries } = parsed as Record<string, unknown>;
  const metadata: Record<string, string> = {};
  if (rawMetadata !== undefined) {
    if (typeof rawMetadata !== 'object' || rawMetadata === null || Array.isArray(rawMetadata)) {
      throw new SafetensorsError(source, undefined, '__metadata__ is not an object of strings');
    }
    for (const [key, value] of Object.entries(rawMetadata)) {
      if (typeof value !== 'string') {
        throw new SafetensorsError(source, undefined, `__metadata__.${key} is ${typeof value}, not a string`);
      }
      metadata[key] = value;
    }
  }

  const entries = Object.entries(rawEntries)
    .map(([name, value]) => parseEntry(source, name, value))
    .sort((a, b) => a.begin - b.begin || a.end - b.end);
  // The tensors must tile the data section exactly: no overlap, no gap, nothing missing or left over.
  let covered = 0;
  let previous: SafetensorsEntry | undefined;
  for (const entry of entries) {
    if (entry.begin < covered) {
      throw new SafetensorsError(
        source,
        entry.name,
        `data_offsets [${entry.begin}, ${entry.end}] overlap tensor '${previous?.name}' (ends at ${covered})`,
      );
    }
    if (entry.begin > covered) {
      const after = previous ? `after tensor '${previous.name}'` : 'at the start of the data';
      throw new SafetensorsError(
        source,
        entry.name,
        `data_offsets [${entry.begin}, ${entry.end}] are not contiguous: ${entry.begin - covered} unused bytes ${after}`,
      );
    }
    covered = entry.end;
    previous = entry;
  }
  if (covered > dataBytes) {
    throw new SafetensorsError(
      source,
      undefined,
      `truncated: the header describes ${covered} data bytes but only ${dataBytes} follow it`,
    );
  }
  if (covered < dataBytes) {
    throw new SafetensorsError(
      source,
      undefined,
      `${dataBytes - covered} bytes after the last tensor belong to none`,
    );
  }
  return { entries, metadata, dataStart };
}

/** The header bytes (length prefix + padded JSON) and the tensors in the order their data follows. */
function layout(
  tensors: ReadonlyMap<string, StoredTensor>,
  metadata: Record<string, string>,
  target: string,
): { header: Uint8Array; ordered: [string, StoredTensor][]; dataBytes: number } {
  const ordered = [...tensors].sort(
    ([nameA, a], [nameB, b]) =>
      writeOrder.indexOf(a.dtype) - writeOrder.indexOf(b.dtype) ||
      (nameA < nameB ? -1 : nameA > nameB ? 1 : 0),
  );
  // __metadata__ first, metadata keys sorted: equal contents give equal bytes (and equal hashes).
  const json: Record<string, unknown> = {};
  const metadataKeys = Object.keys(metadata).sort();
  if (metadataKeys.length > 0)
    json.__metadata__ = Object.fromEntries(metadataKeys.map((key) => [key, metadata[key]]));
  let offset = 0;
  for (const [name, tensor] of ordered) {
    const expected = elementCount(tensor.shape) * safetensorsItemSize[tensor.dtype];
    if (tensor.bytes.byteLength !== expected) {
      throw new SafetensorsError(
        target,
        name,
        `has ${tensor.bytes.byteLength} bytes, shape [${tensor.shape.join(', ')}] of ${tensor.dtype} needs ${expected}`,
      );
    }
    if (name === '__metadata__') throw new SafetensorsError(target, name, 'is a reserved name');
    json[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  const text = new TextEncoder().encode(JSON.stringify(json));
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  const padded = Math.ceil(text.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + text.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(text, 8);
  return { header, ordered, dataBytes: offset };
}

// ---------------------------------------------------------------------------------------------------------
// Bytes

export function encodeSafetensors(
  tensors: ReadonlyMap<string, StoredTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const { header, ordered, dataBytes } = layout(tensors, metadata, 'safetensors bytes');
  const out = new Uint8Array(header.byteLength + dataBytes);
  out.set(header, 0);
  let offset = header.byteLength;
  for (const [, tensor] of ordered) {
    out.set(tensor.bytes, offset);
    offset += tensor.bytes.byteLength;
  }
  return out;
}

/** Decodes without copying: each tensor's bytes are a view into `bytes`. */
export function decodeSafetensors(bytes: Uint8Array, source = 'safetensors bytes'): SafetensorsContents {
  const headerLength = parseHeaderLength(bytes, bytes.byteLength, source);
  const dataStart = 8 + headerLength;
  const header = parseHeader(bytes.subarray(8, dataStart), dataStart, bytes.byteLength - dataStart, source);
  const tensors = new Map<string, StoredTensor>();
  for (const entry of header.entries) {
    const view = bytes.subarray(dataStart + entry.begin, dataStart + entry.end);
    tensors.set(entry.name, { dtype: entry.dtype, shape: entry.shape, bytes: view });
  }
  return { tensors, metadata: header.metadata };
}

// ---------------------------------------------------------------------------------------------------------
// Files

/** fs reads and writes move at most 2 GiB per call; larger tensors go in chunks. */
const ioChunkBytes = 1 << 30;

/** Writes to `${path}.partial` then renames, so a crash never leaves a half-written file under `path`. */
export async function writeSafetensorsFile(
  path: string,
  tensors: ReadonlyMap<string, StoredTensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const { header, ordered } = layout(tensors, metadata, path);
  const partial = `${path}.partial`;
  const handle = await open(partial, 'w');
  try {
    await writeAll(handle, header);
    for (const [, tensor] of ordered) await writeAll(handle, tensor.bytes);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(partial, path);
}

type FileHandle = Awaited<ReturnType<typeof open>>;

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.byteLength; ) {
    const chunk = bytes.subarray(offset, Math.min(offset + ioChunkBytes, bytes.byteLength));
    const { bytesWritten } = await handle.write(chunk);
    offset += bytesWritten;
  }
}

async function readExactly(
  handle: FileHandle,
  into: Uint8Array,
  position: number,
  source: string,
): Promise<void> {
  for (let offset = 0; offset < into.byteLength; ) {
    const length = Math.min(ioChunkBytes, into.byteLength - offset);
    const { bytesRead } = await handle.read(into, offset, length, position + offset);
    if (bytesRead === 0)
      throw new SafetensorsError(source, undefined, `truncated: file ended at byte ${position + offset}`);
    offset += bytesRead;
  }
}

/**
 * An open safetensors file: the header is read and validated up front, tensors one at a time on demand,
 * each into its own buffer, so loading never holds the file twice.
 */
export class SafetensorsFile {
  private readonly byName: Map<string, SafetensorsEntry>;

  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    readonly header: SafetensorsHeader,
  ) {
    this.byName = new Map(header.entries.map((entry) => [entry.name, entry]));
  }

  static async open(path: string): Promise<SafetensorsFile> {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      const prefix = new Uint8Array(Math.min(8, size));
      await readExactly(handle, prefix, 0, path);
      const headerLength = parseHeaderLength(prefix, size, path);
      const json = new Uint8Array(headerLength);
      await readExactly(handle, json, 8, path);
      const dataStart = 8 + headerLength;
      return new SafetensorsFile(handle, path, parseHeader(json, dataStart, size - dataStart, path));
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  get names(): string[] {
    return this.header.entries.map((entry) => entry.name);
  }

  async read(name: string): Promise<StoredTensor> {
    const entry = this.byName.get(name);
    if (!entry) {
      throw new SafetensorsError(this.path, name, `not in the file; it holds ${this.names.join(', ')}`);
    }
    const bytes = new Uint8Array(entry.end - entry.begin);
    await readExactly(this.handle, bytes, this.header.dataStart + entry.begin, this.path);
    return { dtype: entry.dtype, shape: entry.shape, bytes };
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

export async function readSafetensorsFile(path: string): Promise<SafetensorsContents> {
  const file = await SafetensorsFile.open(path);
  try {
    const tensors = new Map<string, StoredTensor>();
    for (const name of file.names) tensors.set(name, await file.read(name));
    return { tensors, metadata: file.header.metadata };
  } finally {
    await file.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// HostTensor conversion

const storedDTypeOf: Record<DType, SafetensorsDType> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  int64: 'I64',
  int32: 'I32',
  bool: 'BOOL',
};

const hostDTypeOf: Partial<Record<SafetensorsDType, DType>> = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  I64: 'int64',
  I32: 'int32',
  BOOL: 'bool',
};

/** A view of the tensor's bytes (no copy). */
export function storedFromHost(tensor: HostTensor): StoredTensor {
  const data = tensor.data;
  return {
    dtype: storedDTypeOf[tensor.dtype],
    shape: [...tensor.dims],
    bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

export interface HostConversionOptions {
  /** Convert F16 and BF16 to float32 (models on the Hub often ship in bf16). Without it F16 stays float16. */
  halfToFloat32?: boolean;
}

/** Aliases the stored bytes when they are aligned for the dtype, copies them otherwise. */
export function hostFromStored(
  name: string,
  tensor: StoredTensor,
  options: HostConversionOptions = {},
): HostTensor {
  const count = elementCount(tensor.shape);
  if (options.halfToFloat32 && (tensor.dtype === 'F16' || tensor.dtype === 'BF16')) {
    const bits = alignedView(tensor.bytes, Uint16Array, count);
    const data = tensor.dtype === 'BF16' ? bfloat16ToFloat32(bits) : float16ToFloat32(bits);
    return { dtype: 'float32', dims: [...tensor.shape], data };
  }
  const dtype = hostDTypeOf[tensor.dtype];
  if (dtype === undefined) {
    const hint = tensor.dtype === 'BF16' ? '; load with { halfToFloat32: true }' : '';
    throw new SafetensorsError('convert', name, `dtype ${tensor.dtype} has no HostTensor equivalent${hint}`);
  }
  const data = alignedView(tensor.bytes, typedArrayOf[dtype], count);
  return { dtype, dims: [...tensor.shape], data } as HostTensor;
}

interface ViewConstructor<T extends HostData> {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

const typedArrayOf: Record<DType, ViewConstructor<HostData>> = {
  float64: Float64Array,
  float32: Float32Array,
  float16: Uint16Array,
  int64: BigInt64Array,
  int32: Int32Array,
  bool: Uint8Array,
};

function alignedView<T extends HostData>(bytes: Uint8Array, View: ViewConstructor<T>, count: number): T {
  const source = bytes.byteOffset % View.BYTES_PER_ELEMENT === 0 ? bytes : bytes.slice();
  return new View(source.buffer, source.byteOffset, count);
}

/** bfloat16 is the top half of a float32: shift the bits back up. */
export function bfloat16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i] << 16;
  return out;
}

/** IEEE half → single; every half value is exact in float32. */
export function float16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const half = bits[i];
    const sign = (half & 0x8000) << 16;
    const exponent = (half >> 10) & 0x1f;
    const mantissa = half & 0x3ff;
    if (exponent === 0) {
      // zero or subnormal: mantissa · 2^-24
      out[i] = (sign ? -1 : 1) * mantissa * 2 ** -24;
    } else if (exponent === 0x1f) {
      outBits[i] = sign | 0x7f800000 | (mantissa << 13); // infinity or NaN (payload kept)
    } else {
      outBits[i] = sign | ((exponent + 112) << 23) | (mantissa << 13); // rebias 15 → 127
    }
  }
  return out;
}
