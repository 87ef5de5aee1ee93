// Model graphs against PyTorch + transformers (test/fixtures/models, made by make_fixtures.py): logits within
// 1e-4 max-abs at real tokens and sequence log-probs within 1e-3, right and left padding; the scoring model
// (positions from the mask) gives a sequence the same numbers whatever its padding; greedy decoding (full
// recompute per token) returns transformers' generate(do_sample=False) tokens.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type HostTensor, hostTensor } from '../../engine/dtype.ts';
import { Graph } from '../../engine/graph.ts';
import {
  buildScoringModel,
  causalLmLogits,
  frozenWeights,
  sequenceLogProbs,
} from '../../engine/models/causal-lm.ts';
import { type Checkpoint, loadCheckpoint } from '../../engine/models/checkpoint.ts';
import { serializeModel } from '../../engine/onnx.ts';
import * as op from '../../engine/ops/index.ts';
import { createSession } from '../../engine/runtime.ts';
import { hostFromStored, readSafetensorsFile } from '../../engine/safetensors.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'models');
const paddings = ['right', 'left'] as const;

async function expectedOf(name: string): Promise<Map<string, HostTensor>> {
  const { tensors } = await readSafetensorsFile(join(fixtures, name, 'expected.safetensors'));
  return new Map([...tensors].map(([key, stored]) => [key, hostFromStored(key, stored)]));
}

async function run(
  model: Uint8Array,
  feeds: Record<string, HostTensor>,
): Promise<Record<string, HostTensor>> {
  const session = await createSession(model, { inWorker: false, intraOpThreads: 1 });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

/** transformers' forward without position_ids: positions 0…T−1 whatever the padding. */
function transformersForwardModel({ spec, parameters }: Checkpoint): Uint8Array {
  const graph = new Graph('transformers-forward');
  const inputIds = graph.input('input_ids', 'int64', ['batch', 'seq']);
  const attentionMask = graph.input('attention_mask', 'int64', ['batch', 'seq']);
  const responseMask = graph.input('response_mask', 'int64', ['batch', 'seq']);
  const positions = op.unsqueeze(op.arange(inputIds, 1), 0); // (1, T)
  const weight = frozenWeights(graph, spec, parameters);
  const logits = causalLmLogits(spec, inputIds, weight, attentionMask, positions);
  const scored = sequenceLogProbs(logits, inputIds, responseMask);
  graph.output('logits', logits);
  graph.output('logp', scored.logp);
  graph.output('n_tokens', scored.nTokens);
  graph.output('mean_logit', scored.meanLogit);
  return serializeModel(graph);
}

function maxAbsDiff(actual: HostTensor, expected: HostTensor, keep: (index: number) => boolean = () => true) {
  assert.deepEqual(actual.dims, expected.dims);
  let worst = 0;
  for (let i = 0; i < expected.data.length; i++)
    if (keep(i)) worst = Math.max(worst, Math.abs(Number(actual.data[i]) - Number(expected.data[i])));
  return worst;
}

function feedsOf(expected: Map<string, HostTensor>, padding: string): Record<string, HostTensor> {
  return Object.fromEntries(
    ['input_ids', 'attention_mask', 'response_mask'].map((key) => [key, expected.get(`${key}_${padding}`)!]),
  );
}

/** Each right-padded row moved to the end of its row: (B, T) int64 → the same sequences, left-padded. */
function toLeftPadding(right: HostTensor, mask: HostTensor): HostTensor {
  const [rows, tokens] = right.dims;
  const data = new BigInt64Array(rows * tokens);
  for (let row = 0; row < rows; row++) {
    const line = (mask.data as BigInt64Array).subarray(row * tokens, (row + 1) * tokens);
    const length = line.filter((value) => value === 1n).length;
    const source = (right.data as BigInt64Array).subarray(row * tokens, row * tokens + length);
    data.set(source, (row + 1) * tokens - length);
  }
  return hostTensor('int64', [rows, tokens], data);
}

for (const name of ['gpt2', 'llama', 'qwen2']) {
  describe(`${name} matches transformers`, () => {
    for (const padding of paddings) {
      it(`logits, log-probs, token counts and mean logits with ${padding} padding`, async (t) => {
        const checkpoint = await loadCheckpoint(join(fixtures, name));
        const expected = await expectedOf(name);
        const feeds = feedsOf(expected, padding);
        const out = await run(transformersForwardModel(checkpoint), feeds);
        const real = realLogits(feeds.attention_mask, checkpoint.spec.config.vocab_size);
        const errors = {
          logits: maxAbsDiff(out.logits, expected.get(`logits_${padding}`)!, real),
          logp: maxAbsDiff(out.logp, expected.get(`logp_${padding}`)!),
          meanLogit: maxAbsDiff(out.mean_logit, expected.get(`mean_logit_${padding}`)!),
        };
        t.diagnostic(
          `max |Δ| logits ${errors.logits.toExponential(2)}, logp ${errors.logp.toExponential(2)}, mean logit ${errors.meanLogit.toExponential(2)}`,
        );
        assert.ok(errors.logits < 1e-4, `logits differ by ${errors.logits}`);
        assert.ok(errors.logp < 1e-3, `log-probs differ by ${errors.logp}`);
        assert.ok(errors.meanLogit < 1e-4, `mean logits differ by ${errors.meanLogit}`);
        assert.deepEqual(
          [...(out.n_tokens.data as Float32Array)],
          [...(expected.get(`n_tokens_${padding}`)!.data as BigInt64Array)].map(Number),
        );
      });
    }

    it('the scoring model gives transformers’ numbers for the same sequences right- or left-padded', async (t) => {
      const checkpoint = await loadCheckpoint(join(fixtures, name));
      const expected = await expectedOf(name);
      const model = buildScoringModel(checkpoint.spec, checkpoint.parameters, { withLogits: true });
      const right = feedsOf(expected, 'right');
      const left = Object.fromEntries(
        Object.entries(right).map(([key, value]) => [key, toLeftPadding(value, right.attention_mask)]),
      );
      assert.notDeepEqual(left.input_ids.data, right.input_ids.data); // the batch has padded rows
      const [fromRight, fromLeft] = [await run(model, right), await run(model, left)];
      const logpErrors = [fromRight, fromLeft].map((out) =>
        maxAbsDiff(out.logp, expected.get('logp_right')!),
      );
      const meanLogitError = maxAbsDiff(fromLeft.mean_logit, expected.get('mean_logit_right')!);
      const vocab = checkpoint.spec.config.vocab_size;
      const real = realLogits(right.attention_mask, vocab);
      const logitError = maxAbsDiff(fromRight.logits, expected.get('logits_right')!, real);
      const leftMovedRight = toRightPadding(fromLeft.logits, right.attention_mask, vocab);
      const paddingError = maxAbsDiff(fromRight.logits, leftMovedRight, real);
      t.diagnostic(
        `max |Δ| logp right ${logpErrors[0].toExponential(2)}, left ${logpErrors[1].toExponential(2)}; logits right vs left ${paddingError.toExponential(2)}`,
      );
      assert.ok(logitError < 1e-4, `right-padded logits differ from transformers by ${logitError}`);
      assert.ok(paddingError < 1e-4, `left-padded logits differ from right-padded by ${paddingError}`);
      for (const error of logpErrors) assert.ok(error < 1e-3, `log-probs differ by ${error}`);
      assert.ok(meanLogitError < 1e-4, `left-padded mean logits differ by ${meanLogitError}`);
      assert.deepEqual(fromLeft.n_tokens.data, fromRight.n_tokens.data);
    });

    it('greedy decoding returns the tokens of generate(do_sample=False)', async () => {
      const checkpoint = await loadCheckpoint(join(fixtures, name));
      const expected = await expectedOf(name);
      const session = await createSession(
        buildScoringModel(checkpoint.spec, checkpoint.parameters, { withLogits: true }),
        { inWorker: false, intraOpThreads: 1 },
      );
      const vocab = checkpoint.spec.config.vocab_size;
      for (const i of [0, 1]) {
        const tokens = [...(expected.get(`greedy_prompt_${i}`)!.data as BigInt64Array)];
        const want = [...(expected.get(`greedy_tokens_${i}`)!.data as BigInt64Array)];
        const generated: bigint[] = [];
        while (generated.length < want.length) {
          const ids = [...tokens, ...generated];
          const row = (value: bigint) =>
            hostTensor(
              'int64',
              [1, ids.length],
              BigInt64Array.from(ids, () => value),
            );
          const out = await session.run({
            input_ids: hostTensor('int64', [1, ids.length], BigInt64Array.from(ids)),
            attention_mask: row(1n),
            response_mask: row(0n),
          });
          const last = (out.logits.data as Float32Array).subarray(
            (ids.length - 1) * vocab,
            ids.length * vocab,
          );
          generated.push(BigInt(last.indexOf(Math.max(...last))));
        }
        assert.deepEqual(generated, want);
      }
      await session.release();
    });
  });
}

/** Filter on flat (B, T, V) indices: true at the logits of real tokens under attention mask (B, T). */
function realLogits(attentionMask: HostTensor, vocab: number): (index: number) => boolean {
  const mask = attentionMask.data as BigInt64Array;
  return (index) => mask[Math.floor(index / vocab)] === 1n;
}

/** Logits (B, T, V) of a left-padded batch moved to the places of its right-padded twin (`rightMask`). */
function toRightPadding(logits: HostTensor, rightMask: HostTensor, vocab: number): HostTensor {
  const [rows, tokens] = rightMask.dims;
  const data = new Float32Array(logits.data.length);
  for (let row = 0; row < rows; row++) {
    const length = (rightMask.data as BigInt64Array)
      .subarray(row * tokens, (row + 1) * tokens)
      .filter((value) => value === 1n).length;
    const start = ((row + 1) * tokens - length) * vocab;
    data.set((logits.data as Float32Array).subarray(start, start + length * vocab), row * tokens * vocab);
  }
  return hostTensor('float32', logits.dims, data);
}
