// Seeded random tensors for benchmarks (deterministic across runs, no dependence on Math.random).

import { type HostTensor, hostTensor } from '../engine/dtype.ts';

/** Normal(0, std) float32 tensor from a seeded xorshift generator and Box–Muller. */
export function seededNormal(dims: number[], seed: number, std = 1): HostTensor<'float32'> {
  const count = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(count);
  let state = (seed * 2654435761) >>> 0 || 1;
  const uniform = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return ((state >>> 0) + 0.5) / 4294967296;
  };
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(uniform())) * std;
    const angle = 2 * Math.PI * uniform();
    data[i] = radius * Math.cos(angle);
    if (i + 1 < count) data[i + 1] = radius * Math.sin(angle);
  }
  return hostTensor('float32', dims, data);
}
