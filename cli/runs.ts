// `dpoflow run | status | list | cancel | report`: pipeline runs on Temporal through the typed client
// (client/runs.ts). Workers (`dpoflow worker`) do the work; these commands start, watch and fetch.

import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  cancelRun,
  connectRuns,
  listRuns,
  RunNotFoundError,
  type RunStatus,
  type RunsClient,
  runStatus,
  startRun,
} from '../client/runs.ts';
import { ConfigError } from '../config/errors.ts';
import { loadConfig } from '../config/load.ts';
import { openStore } from '../store/index.ts';
import {
  type Command,
  connectionHelp,
  exitCodes,
  stringOptions,
  temporalSettings,
  trainingBar,
  UsageError,
} from './command.ts';

/** Connects, runs `body`, closes; a missing run is a usage error (exit 2) naming it. */
async function withRuns(
  values: Record<string, string | undefined>,
  body: (runs: RunsClient) => Promise<number>,
): Promise<number> {
  const runs = await connectRuns(temporalSettings(values));
  try {
    return await body(runs);
  } catch (error) {
    if (error instanceof RunNotFoundError) throw new UsageError(error.message);
    throw error;
  } finally {
    await runs.close();
  }
}

function positional(args: string[], what: string): [string, string[]] {
  const [first, ...rest] = args;
  if (!first || first.startsWith('--')) throw new UsageError(`${what} is required`);
  return [first, rest];
}

const runUsage = `usage: dpoflow run --config FILE [--id RUN_ID] [--detach] [options]

Starts the pipeline (dpoPipeline) for a config on Temporal and follows it: each stage as it starts, a bar for
training steps with loss and accuracy, and at the end the model, the evaluation and the report. Workers must
be running (dpoflow worker). The run id defaults to <name>-<config digest>, so starting the same config while
it runs follows that run instead of starting another; a finished config reruns from its caches.

options:
  --config FILE        the run's config (YAML or JSON)
  --id RUN_ID          the run id (workflow id) to use
  --detach             print the run id and return at once
${connectionHelp}

exit codes: 0 completed, 1 failed, 2 bad usage or config, 130 cancelled`;

async function run(args: string[]): Promise<number> {
  const detach = args.includes('--detach');
  const values = stringOptions(
    args.filter((arg) => arg !== '--detach'),
    ['config', 'id', 'address', 'namespace'],
  );
  if (!values.config) throw new UsageError('--config is required');
  let config: Awaited<ReturnType<typeof loadConfig>>;
  try {
    config = await loadConfig(values.config);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`dpoflow run: ${error.message}`);
    return exitCodes.usage;
  }
  const runs = await connectRuns(temporalSettings(values, config.temporal));
  try {
    const { runId, started } = await startRun(runs, config, { runId: values.id });
    console.log(runId);
    console.error(started ? `started run ${runId}` : `run ${runId} is already going; following it`);
    if (detach) return exitCodes.ok;
    return await follow(runs, runId);
  } finally {
    await runs.close();
  }
}

/** Polls the run until it ends, printing stages and training progress; the exit code says how it ended. */
async function follow(runs: RunsClient, runId: string): Promise<number> {
  const tty = process.stderr.isTTY === true;
  let stage: string | undefined;
  let lastStep = -1;
  for (;;) {
    const status = await runStatus(runs, runId);
    if (status.stage && status.stage !== stage) {
      if (tty && lastStep >= 0) process.stderr.write('\n');
      stage = status.stage;
      console.error(`stage: ${stage}`);
    }
    const beat = status.heartbeat;
    if (beat?.stage === 'train' && typeof beat.step === 'number' && beat.step !== lastStep) {
      lastStep = beat.step;
      const line = trainingBar(beat as Record<string, number>);
      if (tty) process.stderr.write(`\r${line}\x1b[K`);
      else if (beat.step % 10 === 0 || beat.step === beat.totalSteps) console.error(line);
    }
    if (status.status !== 'RUNNING') {
      if (tty && lastStep >= 0) process.stderr.write('\n');
      return report(status);
    }
    await sleep(1000);
  }
}

/** The end of a run on stderr, and its exit code. */
function report(status: RunStatus): number {
  if (status.status === 'COMPLETED' && status.result) {
    const { trained, evaluation } = status.result;
    console.error(`completed: model ${trained.modelUri}`);
    if (evaluation) {
      const m = evaluation.metrics;
      console.error(
        `evaluation: reward ${m.reward_policy.toFixed(3)} (reference ${m.reward_reference.toFixed(3)}), ` +
          `win rate ${m.win_rate.toFixed(2)}, KL ${m.kl.toFixed(3)}; report ${evaluation.uri}/report.html`,
      );
    } else if (trained.evaluation) {
      console.error(
        `held-out rewards/accuracies ${trained.evaluation['eval_rewards/accuracies']?.toFixed(3)}`,
      );
    }
    return exitCodes.ok;
  }
  if (status.status === 'CANCELED' || status.status === 'CANCELLED') {
    console.error(`run ${status.runId} was cancelled`);
    return 130;
  }
  console.error(
    `run ${status.runId} ${status.status.toLowerCase()}${status.failure ? `: ${status.failure}` : ''}`,
  );
  return exitCodes.failure;
}

const statusUsage = `usage: dpoflow status RUN_ID [--json] [options]

The run's status, stage and, while it trains, the step, loss and latest checkpoint; at the end its outputs.

options:
  --json               the whole status as JSON on stdout
${connectionHelp}`;

async function status(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const [runId, rest] = positional(
    args.filter((arg) => arg !== '--json'),
    'RUN_ID',
  );
  const values = stringOptions(rest, ['address', 'namespace']);
  return withRuns(values, async (runs) => {
    const current = await runStatus(runs, runId);
    if (json) console.log(JSON.stringify(current, null, 2));
    else {
      console.log(`${current.runId}: ${current.status}${current.stage ? `, stage ${current.stage}` : ''}`);
      if (current.heartbeat?.stage === 'train')
        console.log(trainingBar(current.heartbeat as Record<string, number>));
      if (current.result) console.log(`model: ${current.result.trained.modelUri}`);
      if (current.failure) console.log(`failure: ${current.failure}`);
    }
    return exitCodes.ok;
  });
}

const listUsage = `usage: dpoflow list [--status Running|Completed|Failed|Canceled] [--json] [options]

Pipeline runs, newest first, with their name, model, dataset and stage.

options:
  --status STATUS      only runs with this Temporal status
  --json               the list as JSON on stdout
${connectionHelp}`;

async function list(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const values = stringOptions(
    args.filter((arg) => arg !== '--json'),
    ['status', 'address', 'namespace'],
  );
  return withRuns(values, async (runs) => {
    const found = await listRuns(runs, { status: values.status });
    if (json) console.log(JSON.stringify(found, null, 2));
    else {
      for (const run of found) {
        console.log(
          `${run.runId}\t${run.status}\t${run.stage ?? ''}\t${run.model ?? ''}\t${run.startTime.toISOString()}`,
        );
      }
    }
    return exitCodes.ok;
  });
}

const cancelUsage = `usage: dpoflow cancel RUN_ID [options]

Asks the run to stop: training stops after its current step and saves a checkpoint.

options:
${connectionHelp}`;

async function cancel(args: string[]): Promise<number> {
  const [runId, rest] = positional(args, 'RUN_ID');
  return withRuns(stringOptions(rest, ['address', 'namespace']), async (runs) => {
    await cancelRun(runs, runId);
    console.error(`cancellation requested for ${runId}`);
    return exitCodes.ok;
  });
}

const reportUsage = `usage: dpoflow report RUN_ID [--out FILE] [options]

Saves a completed run's evaluation report (report.html: metrics, loss and accuracy curves, reward vs KL) to FILE
(default <RUN_ID>.html). S3 settings come from the environment (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, …).

options:
  --out FILE           where to save the report
${connectionHelp}`;

async function reportCommand(args: string[]): Promise<number> {
  const [runId, rest] = positional(args, 'RUN_ID');
  const values = stringOptions(rest, ['out', 'address', 'namespace']);
  return withRuns(values, async (runs) => {
    const current = await runStatus(runs, runId);
    const evaluation = current.result?.evaluation;
    if (!evaluation) {
      console.error(`dpoflow report: run ${runId} has no evaluation report (status ${current.status})`);
      return exitCodes.usage;
    }
    const out = values.out ?? `${runId}.html`;
    await writeFile(out, await openStore(evaluation.uri).get('report.html'));
    console.error(`saved ${out}`);
    return exitCodes.ok;
  });
}

export const runCommands: Command[] = [
  { name: 'run', summary: 'start the pipeline for a config on Temporal and follow it', usage: runUsage, run },
  { name: 'status', summary: "a run's status, stage and training progress", usage: statusUsage, run: status },
  { name: 'list', summary: 'pipeline runs, newest first', usage: listUsage, run: list },
  { name: 'cancel', summary: 'stop a run (training checkpoints first)', usage: cancelUsage, run: cancel },
  { name: 'report', summary: "save a run's evaluation report", usage: reportUsage, run: reportCommand },
];
