// `npm run demo` end to end, as a newcomer runs it: its own Temporal dev server, workers and local store; the
// SFT model, generated pairs, a β sweep of DPO runs, evaluation. It must finish and show a DPO policy whose
// mean reward beats the SFT model's (the demo's exit code says so), and write its summary report.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

test('npm run demo: DPO raises the mean reward over the SFT model', { timeout: 600_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dpoflow-demo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const script = join(import.meta.dirname, '..', 'demo', 'run.ts');
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script, '--dir', dir], {
    timeout: 540_000,
  }).catch((error: { stdout: string; stderr: string; code: number }) => {
    assert.fail(`the demo exited ${error.code}:\n${error.stdout}\n${error.stderr}`);
  });
  const results = [
    ...stdout.matchAll(
      /β ([\d.]+): DPO (-?[\d.]+) vs SFT (-?[\d.]+), win rate ([\d.]+), KL\(π‖π_ref\) ([\d.]+)/g,
    ),
  ];
  assert.equal(results.length, 2, stdout);
  assert.ok(
    results.some(([, , dpo, sft]) => Number(dpo) > Number(sft)),
    `no policy beat the SFT model:\n${stdout}`,
  );
  const summary = await readFile(join(dir, 'report.html'), 'utf8');
  assert.equal(summary.match(/<circle/g)?.length, 3, 'the SFT model and two policies in reward vs KL');
  assert.match(stdout, /Temporal web UI: http:\/\/127\.0\.0\.1:\d+/);
});
