// `dpoflow train --config FILE [--resume]`: a whole DPO run in this process (no Temporal), with progress on
// stderr. Ctrl-C stops between steps; --resume continues from the last checkpoint.

import { parseArgs } from 'node:util';
import { ConfigError } from '../config/errors.ts';
import { loadConfig } from '../config/load.ts';
import type { DpoflowConfig } from '../config/schema.ts';
import { shutdownRuntime } from '../engine/runtime.ts';
import { DatasetError } from '../trainer/dataset.ts';
import { TrainingCancelledError, TrainingSetupError } from '../trainer/dpo-trainer.ts';
import { type RunEvent, runTraining } from '../trainer/run.ts';
import { type Command, exitCodes, UsageError } from './command.ts';

const usage = `usage: dpoflow train --config FILE [--resume]

Runs data preparation, reference log-probs and DPO training in this process with the pipeline's config
schema (YAML or JSON; see README, Configuration). Writes under <store.uri>/runs/<name>/:
  metrics.jsonl         one line per logging step and evaluation (TRL names: loss, rewards/accuracies, …)
  checkpoints/          checkpoint-<step>/ every training.save_steps and at the end
  trainer_state.json    step, epoch, log history
  model/                the trained model as a Hugging Face directory (LoRA adapters merged)

options:
  --config FILE   the run's config
  --resume        continue from the newest checkpoint of this run (same config)

Ctrl-C stops after the current step; rerun with --resume to continue from the last checkpoint.`;

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
    const result = await runTraining(config, {
      resume: values.resume,
      signal: controller.signal,
      report: progress,
    });
    progress.done();
    console.error(`trained ${result.state.global_step} steps; model: ${result.modelUri}`);
    console.error(`metrics: ${result.runUri}/metrics.jsonl`);
    return exitCodes.ok;
  } catch (error) {
    progress.done();
    if (error instanceof TrainingCancelledError) {
      console.error(`${error.message}; continue with: dpoflow train --config ${values.config} --resume`);
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

/** A one-line bar on a terminal; otherwise one line per logged entry, so logs stay readable. */
function progressPrinter(): ((event: RunEvent) => void) & { done(): void } {
  const tty = process.stderr.isTTY === true;
  let open = false;
  let started = 0;
  const line = (text: string) => {
    if (tty) {
      process.stderr.write(`\r${text}\x1b[K`);
      open = true;
    }
  };
  const finishLine = () => {
    if (open) process.stderr.write('\n');
    open = false;
  };
  const printer = (event: RunEvent) => {
    switch (event.kind) {
      case 'message':
        finishLine();
        process.stderr.write(`${event.text}\n`);
        break;
      case 'reference':
        line(`reference log-probs ${event.done}/${event.total} pairs`);
        if (event.done === event.total) finishLine();
        break;
      case 'step': {
        const { step, totalSteps, loss, accuracy } = event.progress;
        started ||= performance.now();
        const width = 30;
        const filled = Math.round((width * step) / totalSteps);
        const rate = step / Math.max(1e-9, (performance.now() - started) / 1000);
        line(
          `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${step}/${totalSteps} ` +
            `loss ${loss.toFixed(4)} acc ${accuracy.toFixed(2)} ${rate.toFixed(1)} steps/s`,
        );
        break;
      }
      case 'log': {
        const { entry } = event;
        const evaluation = 'eval_loss' in entry;
        const shown = evaluation
          ? ['eval_loss', 'eval_rewards/accuracies', 'eval_rewards/margins']
          : ['loss', 'rewards/accuracies', 'rewards/margins', 'grad_norm', 'learning_rate'];
        const text = `step ${entry.step}: ${shown
          .filter((name) => name in entry)
          .map((name) => `${name} ${formatNumber(entry[name])}`)
          .join(', ')}`;
        finishLine();
        process.stderr.write(`${text}\n`);
        break;
      }
    }
  };
  return Object.assign(printer, { done: finishLine });
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
