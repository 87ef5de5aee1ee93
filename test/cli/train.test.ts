// `dpoflow train` end to end, as a user runs it: a tiny model directory, a JSONL of text pairs with a few bad
// rows, a YAML config; metrics.jsonl, checkpoints, trainer_state.json and an HF model/ under the store; Ctrl-C
// and --resume giving the same model as an uninterrupted run.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
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
  /** Where run.json says this run's training artifacts are. */
  const trainedDir = async (name: string) => {
    const run = JSON.parse(await readFile(join(dir, `artifacts-${name}`, 'runs', name, 'run.json'), 'utf8'));
    return fileURLToPath(run.trained.modelUri).replace(/\/model$/, '');
  };

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
          `store: { uri: artifacts-${name} }`,
        ].join('\n'),
      );
    }
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('trains, logs TRL metrics, checkpoints and exports an HF model; a rerun is reused', async () => {
    const result = await dpoflow(dir, 'train', '--config', config('whole'));
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stderr,
      /data prepared: 164 rows → 134 training pairs, 26 held out; 1 invalid, 1 duplicate, 2 skipped/,
    );
    assert.match(result.stderr, /reference log-probs computed/);
    assert.match(result.stderr, /step 150: eval_loss/);
    assert.match(result.stderr, /trained 150 steps; model: file:\/\//);

    const trained = await trainedDir('whole');
    const metrics = (await readFile(join(trained, 'metrics.jsonl'), 'utf8'))
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

    const state = JSON.parse(await readFile(join(trained, 'trainer_state.json'), 'utf8'));
    assert.equal(state.global_step, 150);
    assert.equal(state.log_history.length, metrics.length);
    const model = await loadCheckpoint(join(trained, 'model'));
    const initial = await loadCheckpoint(join(dir, 'model'));
    const wte = 'transformer.wte.weight';
    assert.notDeepEqual(model.parameters.get(wte)!.data, initial.parameters.get(wte)!.data);
    await readFile(join(trained, 'model', 'tokenizer.json')); // exported with the model

    const again = await dpoflow(dir, 'train', '--config', config('whole'));
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /data reused.*\n.*reference log-probs reused.*\nalready trained 150 steps/);
  });

  it('stops on Ctrl-C with a checkpoint and --resume ends with the same model and metrics', async () => {
    const child = spawn(process.execPath, [cli, 'train', '--config', config('interrupted')], { cwd: dir });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      if (/step 25:/.test(stderr) && !child.killed) child.kill('SIGINT');
    });
    const code = await new Promise<number>((resolve) => child.on('exit', (exit) => resolve(exit ?? -1)));
    assert.equal(code, 130, stderr);
    assert.match(
      stderr,
      /training cancelled after step \d+, checkpoint saved; continue with: dpoflow train .* --resume/,
    );
    const stoppedAt = Number(/cancelled after step (\d+)/.exec(stderr)![1]);
    assert.ok(stoppedAt < 150, `stopped at ${stoppedAt}`);

    const refused = await dpoflow(dir, 'train', '--config', config('interrupted'));
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, new RegExp(`has checkpoints \\(last: step ${stoppedAt}\\).*--resume`));
    const resumed = await dpoflow(dir, 'train', '--config', config('interrupted'), '--resume');
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`resuming from the checkpoint at step ${stoppedAt}\\b`));
    const [whole, interrupted] = [await trainedDir('whole'), await trainedDir('interrupted')];
    for (const file of ['model/model.safetensors', 'metrics.jsonl']) {
      assert.deepEqual(
        await readFile(join(interrupted, file)),
        await readFile(join(whole, file)),
        `${file} differs from the uninterrupted run's`,
      );
    }
  });
});
