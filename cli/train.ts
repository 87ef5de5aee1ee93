// `dpoflow train --config FILE [--resume]`: the pipeline's stages in this process (no Temporal) — data
// preparation, reference log-probs, DPO training — with progress on stderr. Ctrl-C stops after the current
// step with a checkpoint; --resume continues from it.

import { parseArgs } from 'node:util';
import { prepareData } from '../activities/prepare-data.ts';
import { cacheReferenceLogprobs } from '../activities/reference-logprobs.ts';
import { stageContext } from '../activities/stage.ts';
import { trainPolicy } from '../activities/train-policy.ts';
import { ConfigError } from '../config/errors.ts';
import { loadConfig, redactSecrets } from '../config/load.ts';
import type { DpoflowConfig } from '../config/schema.ts';
import { dpoUsesReference } from '../engine/dpo/step.ts';
import { shutdownRuntime } from '../engine/runtime.ts';
import { DatasetError } from '../trainer/dataset.ts';
import { TrainingCancelledError, TrainingSetupError } from '../trainer/loop.ts';
import { type Command, exitCodes, trainingBar, UsageError } from './command.ts';

const usage = `usage: dpoflow train --config FILE [--resume]

Runs data preparation, reference log-probs and DPO training in this process with the pipeline's config
schema and artifacts (YAML or JSON; see README, Configuration). Under store.uri, content-addressed:
  data/<key>/          tokenized pairs (train and eval shards), stats.json
  reference/<key>/     the reference model's log-probs of every pair
  train/<key>/         metrics.jsonl (TRL names), checkpoints/, trainer_state.json, model/ (Hugging Face
                       directory, LoRA adapters merged)
  runs/<name>/run.json where this run's artifacts are
A stage whose result exists is reused, so a rerun of a finished config returns at once.

options:
  --config FILE   the run's config
  --resume        continue an interrupted run of this config from its newest checkpoint

Ctrl-C stops after the current step and saves a checkpoint; rerun with --resume to continue.`;

async function run(args: string[]): Promise<number> {
  let values: { config?: string; resume?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: { config: { type: 'string' }, resume: { type: 'boolean', default: false } },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (!values.config) throw new UsageError('--config is required');
  let config: DpoflowConfig;
  try {
    config = await loadConfig(values.config);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`dpoflow train: ${error.message}`);
    return exitCodes.usage;
  }
  const controller = new AbortController();
  const interrupt = () => {
    process.stderr.write('\nstopping after the current step (Ctrl-C again to quit now)\n');
    controller.abort();
    process.once('SIGINT', () => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  const progress = progressPrinter();
  try {
    const context = stageContext(
      config,
      {},
      { heartbeat: progress.heartbeat, log: progress.log, signal: controller.signal },
    );
    const data = await prepareData(config, context);
    const { counts } = data;
    progress.message(
      `data ${data.reused ? 'reused' : 'prepared'}: ${counts.rows} rows → ${counts.train} training pairs, ` +
        `${counts.eval} held out; ${counts.invalid} invalid, ${counts.duplicates} duplicate, ` +
        `${counts.skipped} skipped (too long or identical) — ${data.uri}/stats.json`,
    );
    const reference = dpoUsesReference(config.training.loss_type)
      ? await cacheReferenceLogprobs(config, data, context)
      : undefined;
    if (reference)
      progress.message(`reference log-probs ${reference.reused ? 'reused' : 'computed'}: ${reference.uri}`);
    const trained = await trainPolicy(config, { data, reference }, context, {
      checkpoints: values.resume ? 'resume' : 'refuse',
    });
    progress.done();
    await context.store.putJson(`runs/${config.name}/run.json`, {
      config: redactSecrets(config),
      data,
      reference,
      trained,
    });
    console.error(
      `${trained.reused ? 'already trained' : 'trained'} ${trained.steps} steps; model: ${trained.modelUri}`,
    );
    console.error(`metrics: ${trained.metricsUri}`);
    return exitCodes.ok;
  } catch (error) {
    progress.done();
    if (error instanceof TrainingCancelledError) {
      console.error(
        `${error.message}, checkpoint saved; continue with: dpoflow train --config ${values.config} --resume`,
      );
      return 130;
    }
    if (error instanceof DatasetError || error instanceof TrainingSetupError) {
      console.error(`dpoflow train: ${error.message}`);
      return exitCodes.usage;
    }
    throw error;
  } finally {
    process.removeListener('SIGINT', interrupt);
    await shutdownRuntime();
  }
}

/** A one-line bar on a terminal; logged metrics one line each, so piped output stays readable. */
function progressPrinter() {
  const tty = process.stderr.isTTY === true;
  let open = false;
  let started = 0;
  const line = (text: string) => {
    if (!tty) return;
    process.stderr.write(`\r${text}\x1b[K`);
    open = true;
  };
  const done = () => {
    if (open) process.stderr.write('\n');
    open = false;
  };
  const message = (text: string) => {
    done();
    process.stderr.write(`${text}\n`);
  };
  const heartbeat = (details: Record<string, unknown>) => {
    if (details.stage === 'reference' && typeof details.done === 'number') {
      line(
        `reference log-probs ${details.finishedShard ?? details.shard}: ${details.done}/${details.total} pairs`,
      );
    } else if (details.stage === 'train' && typeof details.resumedFrom === 'number') {
      message(`resuming from the checkpoint at step ${details.resumedFrom}`);
    } else if (details.stage === 'train') {
      const progress = details as Record<string, number>;
      started ||= performance.now();
      const rate = progress.step / Math.max(1e-9, (performance.now() - started) / 1000);
      line(`${trainingBar(progress)} ${rate.toFixed(1)} steps/s`);
    }
  };
  const log = (entry: Record<string, number>) => {
    const shown =
      'eval_loss' in entry
        ? ['eval_loss', 'eval_rewards/accuracies', 'eval_rewards/margins']
        : ['loss', 'rewards/accuracies', 'rewards/margins', 'grad_norm', 'learning_rate'];
    message(
      `step ${entry.step}: ${shown
        .filter((name) => name in entry)
        .map((name) => `${name} ${formatNumber(entry[name])}`)
        .join(', ')}`,
    );
  };
  return { heartbeat, log, message, done };
}

function formatNumber(value: number): string {
  return Math.abs(value) >= 1e-3 || value === 0 ? value.toFixed(4) : value.toExponential(2);
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'run DPO training in this process (data, reference log-probs, training, export)',
  usage,
  run,
};
