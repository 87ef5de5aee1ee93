// Seeded random tensors for benchmarks (deterministic across runs, no dependence on Math.random).

import { type HostTensor, hostTensor } from '../engine/dtype.ts';
import { mulberry32, standardNormal } from '../engine/random.ts';

/** Normal(0, std) float32 tensor. */
export function seededNormal(dims: number[], seed: number, std = 1): HostTensor<'float32'> {
  const normal = standardNormal(mulberry32(seed));
  const count = dims.reduce((a, b) => a * b, 1);
  return hostTensor(
    'float32',
    dims,
    Float32Array.from({ length: count }, () => normal() * std),
  );
}
