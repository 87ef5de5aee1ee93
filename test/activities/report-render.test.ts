// The evaluation report renders in headless Chromium (Debian's `chromium`) without console errors, and its
// plots are there: a tiny pipeline run in process writes report.html, Chromium dumps the rendered DOM and takes
// a screenshot of it.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { evaluatePolicy } from '../../activities/evaluate.ts';
import { prepareData } from '../../activities/prepare-data.ts';
import { cacheReferenceLogprobs } from '../../activities/reference-logprobs.ts';
import { stageContext } from '../../activities/stage.ts';
import { trainPolicy } from '../../activities/train-policy.ts';
import { parseConfig } from '../../config/load.ts';
import { writeTinyModel } from '../../engine/models/tiny.ts';
import { shutdownRuntime } from '../../engine/runtime.ts';
import { preferenceRows } from '../support/pipeline.ts';

after(shutdownRuntime);

async function chromium(t: import('node:test').TestContext): Promise<string | undefined> {
  const found = await promisify(execFile)('sh', ['-c', 'command -v chromium']).then(
    ({ stdout }) => stdout.trim(),
    () => undefined,
  );
  if (found) return found;
  const message = 'chromium not installed (Debian: apt-get install chromium; .ci/run installs it)';
  if (process.env.CI === 'true') throw new Error(`CI=true: ${message}`);
  console.error(`!!! SKIPPED: ${message}`);
  t.skip(message);
  return undefined;
}

test('report.html renders in headless Chromium with its plots and no console errors', {
  timeout: 180_000,
}, async (t) => {
  const browser = await chromium(t);
  if (!browser) return;
  const dir = await mkdtemp(join(tmpdir(), 'dpoflow-report-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeTinyModel(join(dir, 'model'), { family: 'gpt2', seed: 1 });
  await writeFile(join(dir, 'pairs.jsonl'), preferenceRows(60));
  const config = parseConfig({
    name: 'report',
    model: { uri: join(dir, 'model') },
    dataset: { train: join(dir, 'pairs.jsonl'), eval_fraction: 0.2 },
    training: {
      learning_rate: 1e-3,
      max_steps: 12,
      logging_steps: 2,
      eval_steps: 4,
      max_length: 32,
      max_prompt_length: 8,
    },
    evaluation: { num_prompts: 4, samples_per_prompt: 2, max_new_tokens: 6 },
    store: { uri: pathToFileURL(join(dir, 'artifacts')).href },
  });
  const context = stageContext(config, {});
  const data = await prepareData(config, context);
  const reference = await cacheReferenceLogprobs(config, data, context);
  const trained = await trainPolicy(config, { data, reference }, context);
  const evaluation = await evaluatePolicy(config, { data, trained }, context);
  const report = pathToFileURL(join(dir, 'artifacts', 'evaluate', evaluation.key, 'report.html')).href;

  const flags = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--enable-logging=stderr',
    '--v=0',
    '--window-size=1000,1400',
  ];
  const dom = await promisify(execFile)(browser, [...flags, '--dump-dom', report], { maxBuffer: 16 << 20 });
  assert.doesNotMatch(dom.stderr, /:CONSOLE/, 'console messages (errors included) while rendering');
  const svgs = dom.stdout.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
  assert.equal(svgs.length, 3, 'loss, accuracy and reward-vs-KL plots');
  assert.ok(
    svgs.slice(0, 2).every((svg) => /<path d="M[\d.]+,[\d.]+( L[\d.]+,[\d.]+)+"/.test(svg)),
    'curves with points',
  );
  assert.match(dom.stdout, /<td>kl<\/td><td>-?[\d.e+-]+<\/td>/);
  const sampleRows = dom.stdout.match(/<tr><td>(policy|reference)<\/td>/g) ?? [];
  assert.equal(sampleRows.length, 16, 'eight sample completions of each model');

  const png = join(dir, 'report.png');
  await promisify(execFile)(browser, [...flags, `--screenshot=${png}`, report]);
  const image = await readFile(png);
  assert.deepEqual([...image.subarray(1, 4)], [...Buffer.from('PNG')]);
  assert.ok((await stat(png)).size > 10_000, `screenshot of ${(await stat(png)).size} bytes looks blank`);
});
