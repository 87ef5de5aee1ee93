// Decoding with the key/value cache: greedy tokens equal transformers' generate(do_sample=False) for each
// fixture model, batched with left padding; sampling is reproducible from its seed; the exported ONNX
// decoder runs in plain onnxruntime-node and gives the scoring model's logits.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { hostTensor } from '../../engine/dtype.ts';
import { buildScoringModel } from '../../engine/models/causal-lm.ts';
import { loadCheckpoint } from '../../engine/models/checkpoint.ts';
import { cacheNames, cacheShape, exportDecoderOnnx, Generator } from '../../engine/models/generate.ts';
import { createSession } from '../../engine/runtime.ts';
import { hostFromStored, readSafetensorsFile } from '../../engine/safetensors.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'models');
const local = { inWorker: false } as const;

async function greedyExpectations(name: string) {
  const { tensors } = await readSafetensorsFile(join(fixtures, name, 'expected.safetensors'));
  const ids = (key: string) =>
    [...(hostFromStored(key, tensors.get(key)!).data as BigInt64Array)].map(Number);
  return [0, 1].map((i) => ({ prompt: ids(`greedy_prompt_${i}`), tokens: ids(`greedy_tokens_${i}`) }));
}

describe('generation with a key/value cache', () => {
  for (const name of ['gpt2', 'llama', 'qwen2']) {
    it(`${name}: batched greedy decoding returns transformers' tokens`, async () => {
      const { spec, parameters } = await loadCheckpoint(join(fixtures, name));
      const expected = await greedyExpectations(name);
      const generator = await Generator.create(spec, parameters, local);
      const batched = await generator.generate(
        expected.map((e) => e.prompt),
        { maxNewTokens: 8 },
      );
      const single = await generator.generate([expected[1].prompt], { maxNewTokens: 8 });
      await generator.release();
      assert.deepEqual(
        batched,
        expected.map((e) => e.tokens),
      );
      assert.deepEqual(single, [expected[1].tokens]);
    });
  }

  it('sampling is reproducible from its seed; top_k = 1 is greedy; stop tokens end a sequence', async () => {
    const { spec, parameters } = await loadCheckpoint(join(fixtures, 'llama'));
    const generator = await Generator.create(spec, parameters, local);
    const prompts = [
      [256, 72, 105],
      [256, 79],
    ];
    const sample = (seed: number) =>
      generator.generate(prompts, { maxNewTokens: 12, temperature: 1, topP: 0.9, seed });
    const [a, b, c] = [await sample(1), await sample(1), await sample(2)];
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const greedy = await generator.generate(prompts, { maxNewTokens: 12 });
    assert.deepEqual(
      await generator.generate(prompts, { maxNewTokens: 12, temperature: 0.7, topK: 1, seed: 5 }),
      greedy,
    );
    const stop = greedy[0][3];
    const stopped = await generator.generate(prompts, { maxNewTokens: 12, stopTokens: [stop] });
    assert.deepEqual(stopped[0], greedy[0].slice(0, greedy[0].indexOf(stop) + 1));
    await generator.release();
  });

  it('the exported ONNX decoder runs in plain onnxruntime-node and matches the scoring model', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'dpoflow-export-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { spec, parameters } = await loadCheckpoint(join(fixtures, 'qwen2'));
    const path = join(dir, 'decoder.onnx');
    await exportDecoderOnnx(spec, parameters, path);
    const session = await ort.InferenceSession.create(path);
    const ids = [256, 104, 105, 33];
    const { layers, kvHeads, headDim } = cacheShape(spec);
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, 4]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(4).fill(1n), [1, 4]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n]), [1, 4]),
    };
    for (let layer = 0; layer < layers; layer++) {
      for (const kind of ['key', 'value'] as const) {
        feeds[cacheNames.past(layer, kind)] = new ort.Tensor('float32', new Float32Array(0), [
          1,
          kvHeads,
          0,
          headDim,
        ]);
      }
    }
    const out = await session.run(feeds);
    assert.deepEqual(out[cacheNames.present(0, 'key')].dims, [1, kvHeads, 4, headDim]);
    const scoring = await createSession(buildScoringModel(spec, parameters, { withLogits: true }), local);
    const mask = hostTensor('int64', [1, 4], new BigInt64Array(4).fill(1n));
    const reference = await scoring.run({
      input_ids: hostTensor('int64', [1, 4], BigInt64Array.from(ids, BigInt)),
      attention_mask: mask,
      response_mask: mask,
    });
    await scoring.release();
    const vocab = spec.config.vocab_size;
    const last = (reference.logits.data as Float32Array).subarray(3 * vocab);
    const exported = out.logits.data as Float32Array;
    const worst = Math.max(...last.map((value, i) => Math.abs(value - exported[i])));
    assert.ok(worst < 1e-5, `exported decoder logits differ by ${worst}`);
  });
});
