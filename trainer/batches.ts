// From tokenized pairs to the step's feeds: the order of each epoch (seeded shuffle, or file order), length
// bucketing, and right-padded (P, T) tensors with chosen and rejected padded to the same T.

import { dpoFeeds } from '../engine/dpo/step.ts';
import { type HostTensor, hostTensor } from '../engine/dtype.ts';
import { rightPaddedFeeds } from '../engine/models/causal-lm.ts';
import { seededPermutation } from '../engine/random.ts';

/** A tokenized pair, with its reference log-probs once they are known. */
export interface TrainingPair {
  prompt_input_ids: readonly number[];
  chosen_input_ids: readonly number[];
  rejected_input_ids: readonly number[];
  ref_chosen_logps?: number;
  ref_rejected_logps?: number;
}

/** Tokens of the longer side: what a pair costs in a batch. */
export function pairLength(pair: TrainingPair): number {
  return (
    pair.prompt_input_ids.length + Math.max(pair.chosen_input_ids.length, pair.rejected_input_ids.length)
  );
}

/**
 * Pair indices in the order epoch `epoch` visits them: a Fisher–Yates shuffle seeded by (seed, epoch), so any
 * epoch's order is recomputed from two integers on resume; file order when `shuffle` is false.
 */
export function epochOrder(
  count: number,
  options: { shuffle: boolean; seed: number; epoch: number },
): number[] {
  if (!options.shuffle) return Array.from({ length: count }, (_, i) => i);
  return seededPermutation(count, (Math.imul(options.seed, 0x9e3779b1) + options.epoch) >>> 0);
}

/** Batches per mega-batch that length bucketing sorts together (as transformers' LengthGroupedSampler). */
const BUCKET_BATCHES = 16;

/**
 * Cuts an order into micro-batches of `batchSize` (the last may be short). With bucketing, each run of
 * BUCKET_BATCHES batches is sorted by length first, so pairs of similar length share padding while the epoch's
 * shuffle still decides which pairs meet.
 */
export function microBatches(
  order: readonly number[],
  lengthOf: (index: number) => number,
  options: { batchSize: number; bucketing: boolean },
): number[][] {
  const { batchSize } = options;
  const arranged: number[] = [];
  const span = options.bucketing ? batchSize * BUCKET_BATCHES : order.length;
  for (let start = 0; start < order.length; start += span) {
    const group = order.slice(start, start + span);
    if (options.bucketing) group.sort((a, b) => lengthOf(a) - lengthOf(b) || a - b);
    arranged.push(...group);
  }
  const batches: number[][] = [];
  for (let start = 0; start < arranged.length; start += batchSize) {
    batches.push(arranged.slice(start, start + batchSize));
  }
  return batches;
}

/**
 * Feeds for the DPO step (engine/dpo/step.ts): prompt + response per side, right-padded with `padTokenId` to
 * the batch's longest sequence; references in `dtype` when `withReference`.
 */
export function collatePairs(
  pairs: readonly TrainingPair[],
  options: { padTokenId: number; dtype: 'float32' | 'float64'; withReference: boolean },
): Record<string, HostTensor> {
  const P = pairs.length;
  const T = Math.max(...pairs.map(pairLength));
  const feeds: Record<string, HostTensor> = {};
  for (const side of dpoFeeds.sides) {
    const padded = rightPaddedFeeds(
      pairs.map((pair) => [
        pair.prompt_input_ids,
        side === 'chosen' ? pair.chosen_input_ids : pair.rejected_input_ids,
      ]),
      options.padTokenId,
      T,
    );
    feeds[dpoFeeds.inputIds(side)] = padded.input_ids;
    feeds[dpoFeeds.attentionMask(side)] = padded.attention_mask;
    feeds[dpoFeeds.responseMask(side)] = padded.response_mask;
    if (options.withReference) {
      const values = pairs.map((pair, index) => {
        const value = side === 'chosen' ? pair.ref_chosen_logps : pair.ref_rejected_logps;
        if (value === undefined || !Number.isFinite(value)) {
          throw new RangeError(`pair ${index} of the batch has no finite ref_${side}_logps`);
        }
        return value;
      });
      feeds[dpoFeeds.reference(side)] = hostTensor(
        options.dtype,
        [P],
        options.dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values),
      );
    }
  }
  return feeds;
}
