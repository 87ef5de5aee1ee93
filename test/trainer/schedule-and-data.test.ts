// Learning-rate schedules against the HF Trainer's formulas, and the data path before training: file reading,
// row validation, dedupe, counted skips, the eval split and batching.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TextTokenizer } from '../../text/tokenizer.ts';
import {
  collatePairs,
  epochOrder,
  microBatches,
  pairLength,
  type TrainingPair,
} from '../../trainer/batches.ts';
import { DatasetError, preparePairs, readPreferenceFile, splitPairs } from '../../trainer/dataset.ts';
import { learningRateAt, type Schedule, warmupSteps } from '../../trainer/schedule.ts';

describe('learning-rate schedules (HF get_*_schedule_with_warmup)', () => {
  const at = (type: Schedule['type'], steps: number[]) =>
    steps.map((step) => learningRateAt({ type, peak: 1, warmup: 2, total: 10 }, step));
  test('warmup rises linearly from 0', () => {
    assert.deepEqual(at('linear', [0, 1, 2]), [0, 0.5, 1]);
    assert.deepEqual(at('constant_with_warmup', [0, 1, 2, 9]), [0, 0.5, 1, 1]);
  });
  test('linear decays to 0 at total, cosine follows half a cosine', () => {
    assert.deepEqual(at('linear', [6, 10, 11]), [0.5, 0, 0]);
    const [quarter, half, end] = at('cosine', [4, 6, 10]);
    assert.ok(Math.abs(quarter - 0.5 * (1 + Math.cos(Math.PI / 4))) < 1e-15);
    assert.ok(Math.abs(half - 0.5) < 1e-15);
    assert.ok(Math.abs(end) < 1e-15);
  });
  test('constant ignores warmup; warmup_ratio rounds up', () => {
    assert.deepEqual(at('constant', [0, 5]), [1, 1]);
    assert.equal(warmupSteps({ warmup_steps: 0, warmup_ratio: 0.1 }, 25), 3);
    assert.equal(warmupSteps({ warmup_steps: 4, warmup_ratio: 0 }, 25), 4);
  });
});

describe('preference data', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dpoflow-data-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const pretokenized = (prompt: number[], chosen: number[], rejected: number[]) => ({
    prompt_input_ids: prompt,
    chosen_input_ids: chosen,
    rejected_input_ids: rejected,
  });
  const settings = {
    format: 'auto' as const,
    maxInvalidRows: 1,
    dedupe: true,
    truncation: { max_length: 8, max_prompt_length: 4, truncation_mode: 'keep_end' as const },
    tokenizer: async (): Promise<TextTokenizer> => assert.fail('pre-tokenized rows need no tokenizer'),
  };

  test('JSON arrays and JSONL read the same rows; a syntax error is an invalid row with its line', async () => {
    const rows = [pretokenized([1], [2, 9], [3, 9]), pretokenized([1], [4, 9], [5, 9])];
    await writeFile(join(dir, 'rows.json'), JSON.stringify(rows));
    await writeFile(join(dir, 'rows.jsonl'), `${rows.map((row) => JSON.stringify(row)).join('\n')}\n{oops\n`);
    const fromJson = await preparePairs(await readPreferenceFile(join(dir, 'rows.json'), 'auto'), settings);
    const fromLines = await preparePairs(await readPreferenceFile(join(dir, 'rows.jsonl'), 'auto'), settings);
    assert.deepEqual(fromJson.pairs, fromLines.pairs);
    assert.equal(fromLines.invalid.length, 1);
    assert.match(fromLines.invalid[0], /^line 3: invalid JSON/);
    await writeFile(join(dir, 'broken.parquet'), 'not parquet');
    await assert.rejects(
      readPreferenceFile(join(dir, 'broken.parquet'), 'auto'),
      /broken\.parquet: cannot read as Parquet/,
    );
  });

  test('Parquet files (pyarrow, snappy) read as the same rows as JSONL, nested messages included', async () => {
    const fixtures = join(import.meta.dirname, '..', 'fixtures', 'data');
    const fromParquet = await readPreferenceFile(join(fixtures, 'pairs.parquet'), 'auto');
    const fromLines = await readPreferenceFile(join(fixtures, 'pairs.jsonl'), 'auto');
    assert.deepEqual(fromParquet.rows, fromLines.rows);
    const conversational = await readPreferenceFile(join(fixtures, 'conversational.parquet'), 'parquet');
    assert.deepEqual(conversational.rows[0].value, {
      prompt: [{ role: 'user', content: 'hi' }],
      chosen: [{ role: 'assistant', content: 'hello' }],
      rejected: [{ role: 'assistant', content: 'bye' }],
    });
  });

  test('duplicates, over-long and identical pairs are skipped and counted; too many invalid rows fail', async () => {
    const rows = [
      pretokenized([1], [2, 9], [3, 9]),
      pretokenized([1], [2, 9], [3, 9]), // duplicate
      pretokenized([1], [2, 2, 2, 2, 2, 2, 2, 2, 9], [3, 9]), // 10 tokens > max_length 8
      pretokenized([1], [4, 9], [4, 9]), // identical
    ];
    const prepared = await preparePairs(
      { source: 'mem', rows: rows.map((value, i) => ({ line: i + 1, value })) },
      settings,
    );
    assert.equal(prepared.pairs.length, 1);
    assert.equal(prepared.duplicates, 1);
    assert.deepEqual(prepared.tally.dropped, { too_long: 1, identical: 1 });

    const invalid = [{ chosen: 1 }, { rejected: 2 }, rows[0]].map((value, i) => ({ line: i + 1, value }));
    await assert.rejects(
      preparePairs({ source: 'bad.jsonl', rows: invalid }, settings),
      (error) =>
        error instanceof DatasetError &&
        /bad\.jsonl: 2 invalid row\(s\) \(dataset\.max_invalid_rows is 1\)/.test(error.message),
    );
    await assert.rejects(
      preparePairs({ source: 'empty.jsonl', rows: [] }, settings),
      (error) => error instanceof DatasetError && /no usable pairs in 0 row/.test(error.message),
    );
  });

  test('the eval split is by hash: seeded, disjoint, complete, and stable when rows are added', () => {
    const items = Array.from({ length: 150 }, (_, i) => pretokenized([1, i], [2, 9], [3, 9]));
    const first = splitPairs(items.slice(0, 100), 0.1, 42);
    assert.deepEqual(splitPairs(items.slice(0, 100), 0.1, 42), first);
    assert.ok(first.eval.length > 3 && first.eval.length < 20, `${first.eval.length} of 100 held out`);
    assert.equal(first.train.length + first.eval.length, 100);
    assert.ok(first.train.every((pair) => !first.eval.includes(pair)));
    const grown = splitPairs(items, 0.1, 42);
    assert.ok(
      first.eval.every((pair) => grown.eval.includes(pair)),
      'a held-out pair moved to train',
    );
    assert.notDeepEqual(splitPairs(items.slice(0, 100), 0.1, 43).eval, first.eval);
    assert.equal(splitPairs(items.slice(0, 3), 0.01, 42).eval.length, 1);
    assert.throws(() => splitPairs(items.slice(0, 1), 0.5, 0), /leaves nothing to train on/);
  });
});

describe('batches', () => {
  const pair = (length: number): TrainingPair => ({
    prompt_input_ids: [1],
    chosen_input_ids: Array(length).fill(2),
    rejected_input_ids: [3],
  });
  const pairs = Array.from({ length: 40 }, (_, i) => pair(1 + ((i * 7) % 13)));

  test('shuffle is a seeded permutation per epoch; without it, file order', () => {
    const order = epochOrder(40, { shuffle: true, seed: 1, epoch: 0 });
    assert.deepEqual(
      [...order].sort((a, b) => a - b),
      [...Array(40).keys()],
    );
    assert.deepEqual(epochOrder(40, { shuffle: true, seed: 1, epoch: 0 }), order);
    assert.notDeepEqual(epochOrder(40, { shuffle: true, seed: 1, epoch: 1 }), order);
    assert.deepEqual(epochOrder(40, { shuffle: false, seed: 1, epoch: 3 }), [...Array(40).keys()]);
  });

  test('bucketing cuts padding and keeps every pair once', () => {
    const order = epochOrder(40, { shuffle: true, seed: 1, epoch: 0 });
    const padding = (batches: number[][]) =>
      batches.reduce((sum, batch) => {
        const lengths = batch.map((i) => pairs[i].chosen_input_ids.length);
        return sum + lengths.reduce((s, l) => s + Math.max(...lengths) - l, 0);
      }, 0);
    const lengthOf = (i: number) => pairLength(pairs[i]);
    const plain = microBatches(order, lengthOf, { batchSize: 4, bucketing: false });
    const bucketed = microBatches(order, lengthOf, { batchSize: 4, bucketing: true });
    assert.deepEqual(
      bucketed.flat().sort((a, b) => a - b),
      [...Array(40).keys()],
    );
    assert.ok(padding(bucketed) < padding(plain) / 2, `${padding(bucketed)} vs ${padding(plain)}`);
  });

  test('collation right-pads both sides to one length and marks the responses', () => {
    const feeds = collatePairs([pair(2), pair(4)], { padTokenId: 0, dtype: 'float32', withReference: false });
    assert.deepEqual(feeds.chosen_input_ids.dims, [2, 5]);
    assert.deepEqual(feeds.rejected_input_ids.dims, [2, 5]);
    assert.deepEqual([...feeds.chosen_response_mask.data], [0n, 1n, 1n, 0n, 0n, 0n, 1n, 1n, 1n, 1n]);
    assert.deepEqual([...feeds.rejected_attention_mask.data], [1n, 1n, 0n, 0n, 0n, 1n, 1n, 0n, 0n, 0n]);
    assert.throws(
      () => collatePairs([pair(2)], { padTokenId: 0, dtype: 'float32', withReference: true }),
      /pair 0 of the batch has no finite ref_chosen_logps/,
    );
  });
});
