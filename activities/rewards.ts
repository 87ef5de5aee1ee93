// Ground-truth rewards for evaluation (config evaluation.reward): a scalar per (prompt, completion) from a
// built-in sentiment lexicon, an ONNX sequence-classification model, or an HTTP service.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RewardConfig } from '../config/schema.ts';
import { hostTensor } from '../engine/dtype.ts';
import { createSession, type RuntimeOptions } from '../engine/runtime.ts';
import { localFolder } from '../store/from-config.ts';
import type { S3StoreOptions } from '../store/s3-store.ts';
import { loadTokenizer } from '../text/tokenizer.ts';

export interface RewardInput {
  prompt: string;
  completion: string;
}

export interface RewardModel {
  /** One reward per input, in order. */
  score(inputs: readonly RewardInput[]): Promise<number[]>;
  release(): Promise<void>;
}

/** The reward could not be computed: a bad answer from the service, a model without the expected output. */
export class RewardError extends Error {
  override readonly name = 'RewardError';
}

export async function openReward(
  config: RewardConfig,
  options: { scratch: string; s3: S3StoreOptions; runtime: Partial<RuntimeOptions> },
): Promise<RewardModel> {
  switch (config.type) {
    case 'sentiment':
      return {
        score: async (inputs) => inputs.map(({ completion }) => lexiconSentiment(completion)),
        release: async () => {},
      };
    case 'http':
      return {
        score: (inputs) => httpRewards(config.url, config.timeout_ms, inputs),
        release: async () => {},
      };
    case 'onnx':
      return onnxReward(
        await localFolder(config.uri, join(options.scratch, 'reward'), options.s3),
        options.runtime,
      );
  }
}

// A small sentiment lexicon: a stand-in for the paper's IMDb classifier that needs no weights, so evaluation
// runs anywhere. For the paper's setup, export a classifier to ONNX and use reward.type = onnx.
const POSITIVE = new Set(
  'good great excellent amazing wonderful best love loved lovely enjoy enjoyed fun funny brilliant beautiful perfect fantastic superb delightful charming masterpiece touching moving happy nice fine favorite recommend'.split(
    ' ',
  ),
);
const NEGATIVE = new Set(
  'bad worst awful terrible boring poor hate hated waste dull stupid horrible disappointing disappointed mess weak annoying ugly painful sad fail failed lame mediocre pointless worse'.split(
    ' ',
  ),
);

/** (positive − negative words) / (positive + negative words): in [−1, 1], 0 without sentiment words. */
export function lexiconSentiment(text: string): number {
  let positive = 0;
  let negative = 0;
  for (const word of text.toLowerCase().match(/[a-z']+/g) ?? []) {
    if (POSITIVE.has(word)) positive++;
    else if (NEGATIVE.has(word)) negative++;
  }
  return positive + negative === 0 ? 0 : (positive - negative) / (positive + negative);
}

/** POST {inputs: [{prompt, completion}]} → {rewards: number[]} (one per input). */
async function httpRewards(
  url: string,
  timeoutMs: number,
  inputs: readonly RewardInput[],
): Promise<number[]> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!response.ok)
    throw new RewardError(`reward service ${url} answered ${response.status} ${response.statusText}`);
  const body = (await response.json()) as { rewards?: unknown };
  const rewards = body.rewards;
  if (!Array.isArray(rewards) || rewards.length !== inputs.length || !rewards.every(Number.isFinite)) {
    throw new RewardError(`reward service ${url}: expected {"rewards": [${inputs.length} numbers]}`);
  }
  return rewards as number[];
}

/**
 * An ONNX sequence classifier (model.onnx + tokenizer files): inputs input_ids and attention_mask (B, T) int64,
 * first output logits (B, L). Reward = logit of the last label minus the first's when L = 2 (positive − negative,
 * as sentiment classifiers order them), else the single logit.
 */
async function onnxReward(dir: string, runtime: Partial<RuntimeOptions>): Promise<RewardModel> {
  const tokenizer = await loadTokenizer(dir);
  const session = await createSession(new Uint8Array(await readFile(join(dir, 'model.onnx'))), runtime);
  return {
    async score(inputs) {
      const encoded = inputs.map(({ prompt, completion }) => tokenizer.encode(prompt + completion));
      const T = Math.max(1, ...encoded.map((ids) => ids.length));
      const ids = new BigInt64Array(inputs.length * T);
      const mask = new BigInt64Array(inputs.length * T);
      for (const [b, row] of encoded.entries()) {
        for (const [t, id] of row.entries()) {
          ids[b * T + t] = BigInt(id);
          mask[b * T + t] = 1n;
        }
      }
      const dims = [inputs.length, T];
      const feeds = {
        input_ids: hostTensor('int64', dims, ids),
        attention_mask: hostTensor('int64', dims, mask),
      };
      const outputs = await session.run(
        Object.fromEntries(Object.entries(feeds).filter(([name]) => session.inputNames.includes(name))),
      );
      const logits = outputs[session.outputNames[0]];
      const labels = logits.dims.at(-1) ?? 1;
      if (logits.dims.length !== 2 || logits.dims[0] !== inputs.length) {
        throw new RewardError(`reward model ${dir}: expected logits (B, labels), got [${logits.dims}]`);
      }
      const data = logits.data as Float32Array;
      return inputs.map((_, b) =>
        labels === 2 ? data[b * 2 + 1] - data[b * 2] : data[b * labels + labels - 1],
      );
    },
    release: () => session.release(),
  };
}
