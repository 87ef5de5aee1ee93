// Element types the engine and runtime exchange, their typed arrays and ONNX TensorProto codes.
// One table keeps the graph builder, the serializer and the runtime in agreement.

export type DType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'bool';

export type TypedArrayFor<D extends DType> = D extends 'float32'
  ? Float32Array
  : D extends 'float64'
    ? Float64Array
    : D extends 'float16'
      ? Uint16Array
      : D extends 'int64'
        ? BigInt64Array
        : D extends 'int32'
          ? Int32Array
          : Uint8Array;

export type HostData = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

/** A tensor in host memory: what sessions take as feeds and return as fetches. */
export interface HostTensor<D extends DType = DType> {
  dtype: D;
  dims: readonly number[];
  data: TypedArrayFor<D>;
}

/** ONNX TensorProto.DataType codes. */
export const onnxDataType: Record<DType, number> = {
  float32: 1,
  bool: 9,
  int32: 6,
  int64: 7,
  float16: 10,
  float64: 11,
};

export const bytesPerElement: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  int64: 8,
  int32: 4,
  bool: 1,
};

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64' || dtype === 'float16';
}

export function elementCount(dims: readonly number[]): number {
  let count = 1;
  for (const dim of dims) count *= dim;
  return count;
}

export function allocate<D extends DType>(dtype: D, count: number): TypedArrayFor<D> {
  switch (dtype) {
    case 'float32':
      return new Float32Array(count) as TypedArrayFor<D>;
    case 'float64':
      return new Float64Array(count) as TypedArrayFor<D>;
    case 'float16':
      return new Uint16Array(count) as TypedArrayFor<D>;
    case 'int64':
      return new BigInt64Array(count) as TypedArrayFor<D>;
    case 'int32':
      return new Int32Array(count) as TypedArrayFor<D>;
    default:
      return new Uint8Array(count) as TypedArrayFor<D>;
  }
}

/** Builds a HostTensor, checking that the data's length matches the dims. */
export function hostTensor<D extends DType>(
  dtype: D,
  dims: readonly number[],
  data: TypedArrayFor<D>,
): HostTensor<D> {
  const expected = elementCount(dims);
  if (data.length !== expected) {
    throw new RangeError(
      `tensor of dims [${dims.join(', ')}] needs ${expected} elements, got ${data.length}`,
    );
  }
  return { dtype, dims: [...dims], data };
}
