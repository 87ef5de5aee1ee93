// Supervised fine-tuning: rows of every supported shape become examples (prompt masked, EOS appended, long
// prompts cut, over-long rows skipped, invalid rows named), and training lowers the completions' NLL.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { trainingSchema } from '../../config/schema.ts';
import { loadCheckpoint } from '../../engine/models/checkpoint.ts';
import { writeTinyModel } from '../../engine/models/tiny.ts';
import { shutdownRuntime } from '../../engine/runtime.ts';
import { loadTokenizer, type TextTokenizer } from '../../text/tokenizer.ts';
import type { RawRows } from '../../trainer/dataset.ts';
import { prepareSftExamples, trainSft } from '../../trainer/sft.ts';
import type { LogEntry } from '../../trainer/state.ts';

after(shutdownRuntime);

const rows = (values: unknown[]): RawRows => ({
  source: 'sft.jsonl',
  rows: values.map((value, i) => ({ line: i + 1, value })),
});
const settings = {
  max_length: 16,
  max_prompt_length: 6,
  truncation_mode: 'keep_end' as const,
  maxInvalidRows: 1,
};

describe('supervised fine-tuning', () => {
  let dir: string;
  let tokenizer: TextTokenizer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dpoflow-sft-'));
    await writeTinyModel(join(dir, 'model'), { family: 'gpt2', seed: 2 });
    tokenizer = await loadTokenizer(join(dir, 'model'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('rows become examples: prompt kept apart, EOS appended, long prompts cut, long rows skipped', () => {
    const { examples, invalid, skipped } = prepareSftExamples(
      rows([
        { prompt: 'ab', completion: 'cd' },
        { text: 'xyz' },
        { prompt: 'a very long prompt', completion: 'ok' },
        { prompt: 'p', chosen: 'good', rejected: 'bad' },
        { prompt: 'p', completion: 'far too long for sixteen tokens' },
        { completion: 3 },
      ]),
      tokenizer,
      settings,
    );
    const [bos, eos] = [tokenizer.bosTokenId!, tokenizer.eosTokenId!];
    const bytes = (text: string) => [...Buffer.from(text)];
    assert.deepEqual(examples[0], {
      prompt_input_ids: [bos, ...bytes('ab')],
      completion_input_ids: [...bytes('cd'), eos],
    });
    assert.deepEqual(examples[1], { prompt_input_ids: [bos], completion_input_ids: [...bytes('xyz'), eos] });
    assert.deepEqual(examples[2].prompt_input_ids, [bos, ...bytes('rompt')]); // keep_end within 6 tokens
    assert.deepEqual(examples[3].completion_input_ids, [...bytes('good'), eos]);
    assert.equal(examples.length, 4);
    assert.equal(skipped, 1);
    assert.match(invalid[0], /^line 6: .*expected \{prompt, completion\}, \{text\} or a preference row/);
    assert.throws(
      () => prepareSftExamples(rows([{ completion: 1 }, { nope: true }]), tokenizer, settings),
      /sft\.jsonl: 2 invalid row\(s\)/,
    );
  });

  test('training lowers the NLL of the completions', async () => {
    const model = await loadCheckpoint(join(dir, 'model'));
    const corpus = Array.from({ length: 32 }, (_, i) => ({ prompt: `${i % 4}:`, completion: 'abcabc' }));
    const { examples } = prepareSftExamples(rows(corpus), tokenizer, settings);
    const logged: LogEntry[] = [];
    const result = await trainSft({
      spec: model.spec,
      parameters: model.parameters,
      training: trainingSchema.parse({
        learning_rate: 1e-2,
        max_steps: 20,
        logging_steps: 5,
        warmup_steps: 0,
      }),
      seed: 1,
      train: examples,
      padTokenId: 258,
      onLog: (entry) => {
        logged.push(entry);
      },
    });
    assert.equal(result.state.global_step, 20);
    assert.ok(logged.at(-1)!.loss < logged[0].loss / 3, `NLL ${logged[0].loss} → ${logged.at(-1)!.loss}`);
  });
});
