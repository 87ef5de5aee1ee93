// `dpoflow train` end to end, as a user runs it: a tiny model directory, a JSONL of text pairs with a few bad
// rows, a YAML config; metrics.jsonl, checkpoints, trainer_state.json and an HF model/ under the store; Ctrl-C
// and --resume giving the same model as an uninterrupted run.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadCheckpoint } from '../../engine/models/checkpoint.ts';
import { writeTinyModel } from '../../engine/models/tiny.ts';
import { mulberry32 } from '../../engine/random.ts';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'dpoflow.mjs');

async function dpoflow(
  cwd: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [cli, ...args], { cwd }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

/** '+' prompts prefer vowels, '-' prompts consonants (as in test/trainer), as text rows. */
function textRows(count: number): object[] {
  const uniform = mulberry32(3);
  const pick = (letters: string, length: number) =>
    Array.from({ length }, () => letters[Math.floor(uniform() * letters.length)]).join('');
  return Array.from({ length: count }, () => {
    const positive = uniform() < 0.5;
    const length = 2 + Math.floor(uniform() * 4);
    const vowels = pick('aeiou', length);
    const consonants = pick('bcdfghklmnpqrstvwxz', length);
    return {
      prompt: `${positive ? '+' : '-'}${pick('abcdefghijklmnopqrstuvwxyz', 1 + Math.floor(uniform() * 4))}`,
      chosen: positive ? vowels : consonants,
      rejected: positive ? consonants : vowels,
    };
  });
}

describe('dpoflow train', () => {
  let dir: string;
  const config = (name: string) => join(dir, `${name}.yaml`);
  const runDir = (name: string) => join(dir, 'artifacts', 'runs', name);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dpoflow-train-'));
    await writeTinyModel(join(dir, 'model'), { family: 'gpt2', seed: 1 });
    const rows = textRows(160);
    const lines = [
      ...rows.map((row) => JSON.stringify(row)),
      JSON.stringify(rows[0]), // duplicate
      JSON.stringify({ prompt: '+a', chosen: 'same', rejected: 'same' }), // identical
      JSON.stringify({ prompt: '+a', chosen: 'x'.repeat(100), rejected: 'y' }), // longer than max_length
      '{"prompt": "+a", "chosen": 1}', // invalid, allowed by max_invalid_rows
    ];
    await writeFile(join(dir, 'pairs.jsonl'), `${lines.join('\n')}\n`);
    for (const name of ['whole', 'interrupted']) {
      await writeFile(
        config(name),
        [
          `name: ${name}`,
          'seed: 7',
          'model: { uri: model }',
          'dataset: { train: pairs.jsonl, eval_fraction: 0.2, max_invalid_rows: 1 }',
          'training:',
          '  learning_rate: 0.001',
          '  max_steps: 150',
          '  logging_steps: 5',
          '  eval_steps: 50',
          '  save_steps: 10',
          '  max_length: 32',
          '  max_prompt_length: 16',
          'store: { uri: artifacts }',
        ].join('\n'),
      );
    }
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('trains, logs TRL metrics, checkpoints and exports an HF model', async () => {
    const result = await dpoflow(dir, 'train', '--config', config('whole'));
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /dataset\.train: 164 rows → 160 pairs; 1 invalid \(e\.g\. line 164: chosen/);
    assert.match(
      result.stderr,
      /1 duplicates dropped; 1 longer than max_length 32 skipped; 1 with identical/,
    );
    assert.match(result.stderr, /134 training pairs, 26 held out/);
    assert.match(result.stderr, /trained 150 steps/);

    const metrics = (await readFile(join(runDir('whole'), 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    const training = metrics.filter((entry) => 'loss' in entry);
    const evaluation = metrics.filter((entry) => 'eval_loss' in entry);
    assert.equal(training.length, 30);
    assert.deepEqual(
      evaluation.map((entry) => entry.step),
      [50, 100, 150],
    );
    for (const name of [
      'rewards/chosen',
      'rewards/accuracies',
      'logps/rejected',
      'logits/chosen',
      'grad_norm',
      'learning_rate',
    ])
      assert.ok(name in training[0], `metrics lack ${name}`);
    assert.ok(evaluation.at(-1)['eval_rewards/accuracies'] > 0.9, JSON.stringify(evaluation.at(-1)));

    const state = JSON.parse(await readFile(join(runDir('whole'), 'trainer_state.json'), 'utf8'));
    assert.equal(state.global_step, 150);
    assert.equal(state.log_history.length, metrics.length);
    const trained = await loadCheckpoint(join(runDir('whole'), 'model'));
    const initial = await loadCheckpoint(join(dir, 'model'));
    const wte = 'transformer.wte.weight';
    assert.notDeepEqual(trained.parameters.get(wte)!.data, initial.parameters.get(wte)!.data);
    await readFile(join(runDir('whole'), 'model', 'tokenizer.json')); // exported with the model

    const again = await dpoflow(dir, 'train', '--config', config('whole'));
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already has checkpoints \(last: step 150\).*pass --resume/);
  });

  it('stops on Ctrl-C after a step and --resume ends with the same model and metrics', async () => {
    const child = spawn(process.execPath, [cli, 'train', '--config', config('interrupted')], { cwd: dir });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      if (/step 25:/.test(stderr) && !child.killed) child.kill('SIGINT');
    });
    const code = await new Promise<number>((resolve) => child.on('exit', (exit) => resolve(exit ?? -1)));
    assert.equal(code, 130, stderr);
    assert.match(stderr, /training cancelled after step \d+; continue with: dpoflow train .* --resume/);
    const stoppedAt = Number(/cancelled after step (\d+)/.exec(stderr)![1]);
    assert.ok(stoppedAt < 150, `stopped at ${stoppedAt}`);

    const resumed = await dpoflow(dir, 'train', '--config', config('interrupted'), '--resume');
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`resuming from step ${stoppedAt - (stoppedAt % 10)}`));
    for (const file of ['model/model.safetensors', 'metrics.jsonl']) {
      assert.deepEqual(
        await readFile(join(runDir('interrupted'), file)),
        await readFile(join(runDir('whole'), file)),
        `${file} differs from the uninterrupted run's`,
      );
    }
  });
});
