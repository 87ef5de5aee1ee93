// Model graphs against PyTorch + transformers (test/fixtures/models, made by make_fixtures.py): logits within
// 1e-4 max-abs at real tokens and sequence log-probs within 1e-3, right and left padding; greedy decoding
// (full recompute per token) returns transformers' generate(do_sample=False) tokens.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type HostTensor, hostTensor } from '../../engine/dtype.ts';
import { buildScoringModel } from '../../engine/models/causal-lm.ts';
import { loadCheckpoint } from '../../engine/models/checkpoint.ts';
import { createSession } from '../../engine/runtime.ts';
import { hostFromStored, readSafetensorsFile } from '../../engine/safetensors.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'models');

async function expectedOf(name: string): Promise<Map<string, HostTensor>> {
  const { tensors } = await readSafetensorsFile(join(fixtures, name, 'expected.safetensors'));
  return new Map([...tensors].map(([key, stored]) => [key, hostFromStored(key, stored)]));
}

function maxAbsDiffWhere(
  actual: Float32Array,
  expected: Float32Array,
  keep: (index: number) => boolean,
): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++)
    if (keep(i)) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  return worst;
}

for (const name of ['gpt2', 'llama', 'qwen2']) {
  describe(`${name} matches transformers`, () => {
    for (const padding of ['right', 'left']) {
      it(`logits, log-probs, token counts and mean logits with ${padding} padding`, async (t) => {
        const checkpoint = await loadCheckpoint(join(fixtures, name));
        const expected = await expectedOf(name);
        const session = await createSession(
          buildScoringModel(checkpoint.spec, checkpoint.parameters, { withLogits: true }),
          { inWorker: false },
        );
        const feeds = {
          input_ids: expected.get(`input_ids_${padding}`)!,
          attention_mask: expected.get(`attention_mask_${padding}`)!,
          response_mask: expected.get(`response_mask_${padding}`)!,
        };
        const out = await session.run(feeds);
        await session.release();
        const mask = feeds.attention_mask.data as BigInt64Array;
        const vocab = checkpoint.spec.config.vocab_size;
        const logitError = maxAbsDiffWhere(
          out.logits.data as Float32Array,
          expected.get(`logits_${padding}`)!.data as Float32Array,
          (index) => mask[Math.floor(index / vocab)] === 1n,
        );
        const logpError = maxAbsDiffWhere(
          out.logp.data as Float32Array,
          expected.get(`logp_${padding}`)!.data as Float32Array,
          () => true,
        );
        const meanLogitError = maxAbsDiffWhere(
          out.mean_logit.data as Float32Array,
          expected.get(`mean_logit_${padding}`)!.data as Float32Array,
          () => true,
        );
        t.diagnostic(
          `max |Δ| logits ${logitError.toExponential(2)}, logp ${logpError.toExponential(2)}, mean logit ${meanLogitError.toExponential(2)}`,
        );
        assert.ok(logitError < 1e-4, `logits differ by ${logitError}`);
        assert.ok(logpError < 1e-3, `log-probs differ by ${logpError}`);
        assert.ok(meanLogitError < 1e-4, `mean logits differ by ${meanLogitError}`);
        assert.deepEqual(
          [...(out.n_tokens.data as Float32Array)],
          [...(expected.get(`n_tokens_${padding}`)!.data as BigInt64Array)].map(Number),
        );
      });
    }

    it('greedy decoding returns the tokens of generate(do_sample=False)', async () => {
      const checkpoint = await loadCheckpoint(join(fixtures, name));
      const expected = await expectedOf(name);
      const session = await createSession(
        buildScoringModel(checkpoint.spec, checkpoint.parameters, { withLogits: true }),
        { inWorker: false },
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
