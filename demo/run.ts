// `npm run demo`: the paper's controlled-sentiment experiment in miniature, end to end on this machine. It
// starts an embedded stack (a Temporal dev server with its web UI and a SQLite file, workers for both queues, a
// local artifact store), then runs a β sweep of full pipelines: a tiny GPT with a byte-level tokenizer is
// fine-tuned on built-in review sentences (SFT, which becomes π_ref), samples completions of review openings
// that a sentiment reward labels into preference pairs, trains with DPO, and is evaluated against the SFT
// model on reward, win rate and KL. It prints each policy's numbers and where the reports are.

import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { escapeHtml, lineChart } from '../activities/evaluate.ts';
import { connectRuns, runStatus, startSweep } from '../client/runs.ts';
import { parseConfig } from '../config/load.ts';
import { writeTinyModel } from '../engine/models/tiny.ts';
import { freePort } from '../infra/service-process.ts';
import { startTemporalDevServer } from '../infra/temporal-dev-server.ts';
import { startPipelineWorkers } from '../workers/run.ts';
import type { SweepResult } from '../workflows/sweep.ts';
import { promptRows, reviewRows } from './corpus.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '.dpoflow/demo' },
    betas: { type: 'string', default: '0.1,0.5' },
    fresh: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run demo -- [--dir .dpoflow/demo] [--betas 0.1,0.5] [--fresh]

Runs the miniature sentiment experiment on an embedded stack and prints each DPO policy's mean reward, win
rate and KL against the SFT model, and where the HTML reports and the Temporal web UI are. Artifacts and the
Temporal history stay in --dir (a rerun reuses every finished stage; --fresh starts over).`);
  process.exit(0);
}

const dir = resolve(values.dir!);
if (values.fresh) await rm(dir, { recursive: true, force: true });
const inputs = join(dir, 'inputs');
await mkdir(inputs, { recursive: true });
await writeTinyModel(join(inputs, 'model'), { family: 'gpt2', seed: 1, width: 64, layers: 2, heads: 4 });
const jsonl = (rows: object[]) => rows.map((row) => `${JSON.stringify(row)}\n`).join('');
await writeFile(join(inputs, 'reviews.jsonl'), jsonl(reviewRows(400)));
await writeFile(join(inputs, 'prompts.jsonl'), jsonl(promptRows()));

// The SDK's per-task INFO lines would bury the demo's own output.
Runtime.install({ logger: new DefaultLogger('WARN') });
const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
console.log('starting Temporal (dev server) and the workers…');
const uiPort = await freePort();
const temporal = await startTemporalDevServer({
  dbFile: join(dir, 'temporal.db'),
  uiPort,
  logDir: join(dir, 'logs'),
});
const queues = { cpu: 'dpoflow-demo-cpu', gpu: 'dpoflow-demo-gpu' };
// A short grace: on Ctrl-C, running training saves its checkpoint within seconds and the demo ends.
const workers = await startPipelineWorkers({
  address: temporal.address,
  namespace: 'default',
  queues,
  shutdownGraceTime: '2 seconds',
});
const runs = await connectRuns({
  address: temporal.address,
  namespace: 'default',
  task_queues: queues,
  reference_shards_per_activity: 8,
  training_heartbeat_timeout_s: 120,
});
let exitCode = 1;
let interrupted = false;
// Ctrl-C ends the demo cleanly: the workers stop (training checkpoints), then the dev server.
const interrupt = () => {
  interrupted = true;
};
process.once('SIGINT', interrupt);
process.once('SIGTERM', interrupt);
try {
  const config = parseConfig({
    name: 'demo',
    seed: 1,
    model: { uri: join(inputs, 'model') },
    // Replaced by the generated pairs; prepared data holds 10% of them out for the preference metrics.
    dataset: { train: join(inputs, 'generated.jsonl'), eval_fraction: 0.1 },
    training: {
      learning_rate: 3e-4,
      max_steps: 200,
      per_device_train_batch_size: 16,
      lr_scheduler_type: 'constant',
      logging_steps: 20,
      eval_steps: 200,
      save_steps: 100,
      max_length: 40,
      max_prompt_length: 16,
    },
    stages: {
      sft: {
        enabled: true,
        dataset: join(inputs, 'reviews.jsonl'),
        learning_rate: 3e-3,
        num_train_epochs: 30,
      },
      generate_preferences: {
        enabled: true,
        prompts: join(inputs, 'prompts.jsonl'),
        completions_per_prompt: 16,
        max_new_tokens: 12,
        temperature: 1,
      },
    },
    evaluation: { num_prompts: 8, samples_per_prompt: 32, max_new_tokens: 12, temperature: 1 },
    store: { uri: pathToFileURL(join(dir, 'artifacts')).href },
    temporal: { address: temporal.address, task_queues: queues },
  });
  const betas = values.betas!.split(',').map(Number);
  const { runId } = await startSweep(
    runs,
    {
      config,
      grid: { 'training.beta': betas },
      metric: 'eval_rewards/accuracies',
      mode: 'max',
      maxConcurrent: 1,
    },
    { runId: `demo-sweep-${betas.join('-')}` },
  );
  console.log(`sweep ${runId} started: β ∈ {${betas.join(', ')}}; watch it at ${temporal.uiUrl}`);
  let status = await runStatus(runs, runId);
  let last = '';
  while (status.status === 'RUNNING') {
    if (interrupted)
      throw new Error(`interrupted; rerun to continue the sweep from its checkpoints and caches`);
    await new Promise((done) => setTimeout(done, 1000));
    status = await runStatus(runs, runId);
    // Each trial is a child pipeline <sweep id>/trial-<n>: show the stages as they change.
    const trials = await Promise.all(
      betas.map((beta, i) =>
        runStatus(runs, `${runId}/trial-${i}`).then(
          (trial) =>
            `β ${beta}: ${trial.status === 'RUNNING' ? (trial.stage ?? 'starting') : trial.status.toLowerCase()}`,
          () => `β ${beta}: waiting`,
        ),
      ),
    );
    const line = trials.join(', ');
    if (line !== last) console.log(`  ${elapsed()}  ${line}`);
    last = line;
  }
  if (status.status !== 'COMPLETED')
    throw new Error(`the sweep ${status.status.toLowerCase()}: ${status.failure}`);
  const result = status.result as unknown as SweepResult;
  console.log(
    `\ndone in ${elapsed()}. Mean sentiment reward of samples on held-out prompts (SFT model = π_ref):`,
  );
  let improved = false;
  for (const trial of result.trials) {
    const evaluation = trial.result.evaluation!;
    const m = evaluation.metrics;
    improved ||= m.reward_policy > m.reward_reference;
    console.log(
      `  β ${trial.settings['training.beta']}: DPO ${m.reward_policy.toFixed(3)} vs SFT ${m.reward_reference.toFixed(3)}, ` +
        `win rate ${m.win_rate.toFixed(2)}, KL(π‖π_ref) ${m.kl.toFixed(2)} nats, held-out preference accuracy ` +
        `${(m.preference['eval_rewards/accuracies'] ?? Number.NaN).toFixed(2)}\n    report: ${evaluation.uri}/report.html`,
    );
  }
  const summary = join(dir, 'report.html');
  await writeFile(summary, sweepReport(result));
  console.log(`\nsummary (reward vs KL of the SFT model and each policy): ${pathToFileURL(summary).href}`);
  console.log(
    `Temporal web UI: ${temporal.uiUrl} (history kept in ${join(dir, 'temporal.db')} while the demo runs)`,
  );
  if (!improved) console.log('no DPO policy beat the SFT model this time: try other --betas');
  exitCode = improved ? 0 : 1;
} catch (error) {
  console.error(`demo failed: ${(error as Error).message}`);
} finally {
  workers.shutdown();
  await workers.done;
  await runs.close();
  await temporal.stop();
}
process.exit(exitCode);

/** One page for the sweep: a row and a reward-vs-KL point per policy, the SFT model at KL 0. */
function sweepReport(result: SweepResult): string {
  const rows = result.trials.map((trial) => {
    const m = trial.result.evaluation!.metrics;
    return {
      beta: trial.settings['training.beta'],
      m,
      report: `${trial.result.evaluation!.uri}/report.html`,
    };
  });
  const sft = rows[0].m.reward_reference;
  const points = [[0, sft], ...rows.map(({ m }) => [m.kl, m.reward_policy])].sort((a, b) => a[0] - b[0]);
  const table = rows
    .map(
      ({ beta, m, report }) =>
        `<tr><td>β ${beta}</td><td>${m.reward_policy.toFixed(3)}</td><td>${m.win_rate.toFixed(2)}</td><td>${m.kl.toFixed(2)}</td><td><a href="${escapeHtml(report)}">report</a></td></tr>`,
    )
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>dpoflow demo</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}td,th{padding:.2rem .8rem;text-align:left}</style></head><body>
<h1>DPO on a miniature sentiment task</h1>
<p>Mean sentiment reward of samples on held-out prompts. SFT model (π_ref): ${sft.toFixed(3)}.</p>
<table><tr><th>policy</th><th>reward</th><th>win rate vs SFT</th><th>KL(π‖π_ref)</th><th></th></tr>${table}</table>
<h2>Reward vs KL (SFT at KL 0, then each DPO policy)</h2>${lineChart(points, { points: true, xLabel: 'KL', yLabel: 'reward' })}
</body></html>
`;
}
