// `dpoflow score` end to end, as a user runs it: a tiny model directory, a JSONL file, the JSONL it writes,
// progress and errors on stderr, and exit codes.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { writeTinyModel } from '../../engine/models/tiny.ts';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'dpoflow.mjs');

async function dpoflow(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [cli, ...args]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

describe('dpoflow score', () => {
  let dir: string;
  let model: string;
  const rows = [
    { prompt: 'The movie was', chosen: ' great!', rejected: ' awful.' },
    { chosen: 'Q: 1+1? A: 2', rejected: 'Q: 1+1? A: 3' },
    {
      prompt: [{ role: 'user', content: 'hi' }],
      chosen: [{ role: 'assistant', content: 'hello' }],
      rejected: [{ role: 'assistant', content: 'bye' }],
    },
    { prompt_input_ids: [256, 104], chosen_input_ids: [105, 257], rejected_input_ids: [106, 107, 257] },
    { prompt: 'a long prompt that goes on', chosen: ' and on and on and on', rejected: ' no' },
  ];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dpoflow-score-'));
    model = join(dir, 'model');
    await writeTinyModel(model, { family: 'llama', seed: 1, width: 32 });
    await writeFile(join(dir, 'rows.jsonl'), `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('writes one line per row in input order, the same for any batch size', async () => {
    const outputs: Record<string, number>[][] = [];
    for (const batchSize of ['1', '4']) {
      const out = join(dir, `scores-${batchSize}.jsonl`);
      const result = await dpoflow(
        'score',
        '--model',
        model,
        '--data',
        join(dir, 'rows.jsonl'),
        '--out',
        out,
        '--batch-size',
        batchSize,
      );
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /scored 5\/5 pairs/);
      outputs.push(
        (await readFile(out, 'utf8'))
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line)),
      );
    }
    const [single, batched] = outputs;
    assert.deepEqual(
      single.map((line) => line.index),
      [0, 1, 2, 3, 4],
    );
    assert.deepEqual(Object.keys(single[0]), [
      'index',
      'logp_chosen',
      'logp_rejected',
      'n_tokens_chosen',
      'n_tokens_rejected',
    ]);
    assert.deepEqual(
      single.map((line) => [line.n_tokens_chosen, line.n_tokens_rejected]),
      [
        [8, 8],
        [3, 3], // implicit prompt: the space before "2" moves to the responses (TRL)
        [6, 4],
        [2, 3],
        [22, 4],
      ],
    );
    for (const [i, line] of single.entries()) {
      assert.ok(line.logp_chosen < 0 && line.logp_rejected < 0);
      assert.ok(
        Math.abs(line.logp_chosen - batched[i].logp_chosen) < 1e-4,
        'padding does not change a score',
      );
      assert.ok(Math.abs(line.logp_rejected - batched[i].logp_rejected) < 1e-4);
    }
  });

  it('lists invalid rows by line number, skips pairs over --max-length, and exits 2', async () => {
    const data = join(dir, 'bad.jsonl');
    await writeFile(
      data,
      [
        JSON.stringify(rows[0]),
        'not json',
        '',
        JSON.stringify({ prompt: 'x', chosen: 5, rejected: 'y' }),
        JSON.stringify(rows[4]),
      ].join('\n'),
    );
    const out = join(dir, 'bad-scores.jsonl');
    const result = await dpoflow(
      'score',
      '--model',
      model,
      '--data',
      data,
      '--out',
      out,
      '--max-length',
      '20',
      '--max-prompt-length',
      '10',
    );
    assert.equal(result.code, 2);
    assert.match(result.stderr, /2 invalid row\(s\):\n {2}line 2: invalid JSON/);
    assert.match(result.stderr, /line 4: chosen: .*standard format/);
    assert.match(result.stderr, /skipped 1 pair\(s\) longer than --max-length 20/);
    assert.equal((await readFile(out, 'utf8')).trim().split('\n').length, 1);
  });

  it('rejects bad usage with exit code 2 and the command help', async () => {
    const missing = await dpoflow('score', '--model', model);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--data is required\n\nusage: dpoflow score/);
    const device = await dpoflow('score', '--model', model, '--data', 'x', '--out', 'y', '--device', 'tpu');
    assert.match(device.stderr, /--device: expected cpu or cuda, received "tpu"/);
    const help = await dpoflow('score', '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--batch-size N/);
    const noModel = await dpoflow(
      'score',
      '--model',
      join(dir, 'nowhere'),
      '--data',
      join(dir, 'rows.jsonl'),
      '--out',
      join(dir, 'o.jsonl'),
    );
    assert.equal(noModel.code, 1);
    assert.match(noModel.stderr, /nowhere\/config\.json: cannot read \(ENOENT\)/);
  });
});
