// Reference log-probs: π_ref runs once over every pair (batches of similar length), and training reads the
// numbers instead of holding a reference model. Shared by `dpoflow train` and the pipeline's caching stage.

import type { CausalLmSpec } from '../engine/models/hf-config.ts';
import { PairScorer } from '../engine/models/scorer.ts';
import type { ParameterSet } from '../engine/parameters.ts';
import type { RuntimeOptions } from '../engine/runtime.ts';
import { pairLength, type TrainingPair } from './batches.ts';

export async function scoreReference(
  spec: CausalLmSpec,
  parameters: ParameterSet,
  pairs: readonly TrainingPair[],
  options: {
    batchSize: number;
    runtime?: Partial<RuntimeOptions>;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<TrainingPair[]> {
  const scorer = await PairScorer.create(spec, parameters, options.runtime);
  try {
    const order = pairs.map((_, i) => i).sort((a, b) => pairLength(pairs[a]) - pairLength(pairs[b]));
    const scored: TrainingPair[] = new Array(pairs.length);
    for (let start = 0; start < order.length; start += options.batchSize) {
      const batch = order.slice(start, start + options.batchSize);
      const scores = await scorer.score(batch.map((i) => pairs[i]));
      batch.forEach((index, i) => {
        scored[index] = {
          ...pairs[index],
          ref_chosen_logps: scores[i].logp_chosen,
          ref_rejected_logps: scores[i].logp_rejected,
        };
      });
      options.onProgress?.(Math.min(start + options.batchSize, order.length), order.length);
    }
    return scored;
  } finally {
    await scorer.release();
  }
}
