// The evaluation rewards: the built-in lexicon, an HTTP service (a local server here), and an ONNX sequence
// classifier (a tiny one built with the engine: positive − negative logit of a bag-of-bytes model).

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { lexiconSentiment, openReward, type RewardInput } from '../../activities/rewards.ts';
import { hostTensor } from '../../engine/dtype.ts';
import { Graph } from '../../engine/graph.ts';
import { serializeModel } from '../../engine/onnx.ts';
import * as op from '../../engine/ops/index.ts';
import { shutdownRuntime } from '../../engine/runtime.ts';
import { writeByteLevelTokenizer } from '../../text/byte-level-tokenizer.ts';

after(shutdownRuntime);

const inputs: RewardInput[] = [
  { prompt: 'The movie', completion: ' was great and wonderful' },
  { prompt: 'The movie', completion: ' was awful' },
  { prompt: 'The movie', completion: ' was long' },
];

describe('rewards', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dpoflow-reward-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const options = () => ({ scratch: dir, s3: {}, runtime: {} });

  test('sentiment: (positive − negative) / (positive + negative) words of the completion', async () => {
    assert.equal(lexiconSentiment("it's GOOD, not bad, great"), (2 - 1) / 3);
    const reward = await openReward({ type: 'sentiment' }, options());
    assert.deepEqual(await reward.score(inputs), [1, -1, 0]);
  });

  test('http: posts the inputs and reads one reward each; a wrong answer is an error naming the service', async (t) => {
    const requests: unknown[] = [];
    let answer: (count: number) => unknown = (count) => ({
      rewards: Array.from({ length: count }, (_, i) => i / 2),
    });
    const server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => {
        body += chunk;
      });
      request.on('end', () => {
        const parsed = JSON.parse(body);
        requests.push(parsed);
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify(answer(parsed.inputs.length)));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/reward`;
    const reward = await openReward({ type: 'http', url, timeout_ms: 5000 }, options());
    assert.deepEqual(await reward.score(inputs), [0, 0.5, 1]);
    assert.deepEqual(requests, [{ inputs }]);
    answer = () => ({ rewards: [1] });
    await assert.rejects(
      reward.score(inputs),
      /reward service http:\/\/127\.0\.0\.1:\d+\/reward: expected \{"rewards": \[3 numbers\]\}/,
    );
  });

  test('onnx: positive − negative logit of a sequence classifier with its tokenizer', async () => {
    // Logits (B, 2) = mean over tokens of a per-byte table: '!' pushes label 1 (positive), '?' label 0.
    const graph = new Graph('classifier');
    const ids = graph.input('input_ids', 'int64', ['batch', 'seq']);
    graph.input('attention_mask', 'int64', ['batch', 'seq']);
    const table = new Float32Array(259 * 2);
    table['!'.charCodeAt(0) * 2 + 1] = 4;
    table['?'.charCodeAt(0) * 2] = 4;
    const logits = op.reduceMean(
      op.gather(graph.initializer('table', hostTensor('float32', [259, 2], table)), ids),
      [1],
    );
    graph.output('logits', logits);
    const model = join(dir, 'classifier');
    await writeByteLevelTokenizer(model);
    await writeFile(join(model, 'model.onnx'), serializeModel(graph));
    const reward = await openReward({ type: 'onnx', uri: model }, options());
    try {
      const [positive, negative, neutral] = await reward.score([
        { prompt: 'a', completion: '!!' },
        { prompt: 'a', completion: '??' },
        { prompt: 'a', completion: 'bb' },
      ]);
      assert.ok(positive > 0 && negative < 0, `${positive} ${negative}`);
      assert.equal(neutral, 0);
    } finally {
      await reward.release();
    }
  });
});
