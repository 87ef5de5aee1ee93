// `dpoflow worker`: runs pipeline workers for the CPU queue, the GPU queue, or both.

import { hostname } from 'node:os';
import { shutdownRuntime } from '../engine/runtime.ts';
import { runPipelineWorkers } from '../workers/run.ts';
import {
  type Command,
  connectionHelp,
  exitCodes,
  stringOptions,
  temporalSettings,
  UsageError,
} from './command.ts';

const usage = `usage: dpoflow worker [--queues cpu,gpu] [options]

Polls Temporal for pipeline work until SIGINT/SIGTERM, then shuts down gracefully (running training saves a
checkpoint). The cpu queue runs data preparation and reference log-probs; the gpu queue runs training, one
attempt at a time. S3 credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the
AWS credential chain); each run's config names its store and S3 endpoint.

options:
  --queues LIST        cpu, gpu or cpu,gpu (default cpu,gpu: one process for local use)
${connectionHelp}
  --cpu-queue NAME     name of the CPU queue (default dpoflow-cpu, as temporal.task_queues.cpu)
  --gpu-queue NAME     name of the GPU queue (default dpoflow-gpu, as temporal.task_queues.gpu)
  --device cpu|cuda    execution provider override for this worker's runs
  --grace SECONDS      time running activities get after a shutdown signal (default 30)`;

async function run(args: string[]): Promise<number> {
  const values = stringOptions(args, [
    'queues',
    'address',
    'namespace',
    'cpu-queue',
    'gpu-queue',
    'device',
    'grace',
  ]);
  const queues = (values.queues ?? 'cpu,gpu').split(',');
  const unknown = queues.filter((queue) => queue !== 'cpu' && queue !== 'gpu');
  if (unknown.length)
    throw new UsageError(`--queues: expected cpu, gpu or cpu,gpu, received "${values.queues}"`);
  const device = values.device;
  if (device !== undefined && device !== 'cpu' && device !== 'cuda')
    throw new UsageError(`--device: expected cpu or cuda, received "${device}"`);
  const grace = Number(values.grace ?? 30);
  if (!(grace >= 0)) throw new UsageError(`--grace: expected seconds ≥ 0, received "${values.grace}"`);
  console.error(`dpoflow worker: polling ${queues.join(' and ')} (Ctrl-C to stop)`);
  const { address, namespace } = temporalSettings(values);
  try {
    await runPipelineWorkers({
      address,
      namespace,
      queues: {
        cpu: queues.includes('cpu') ? (values['cpu-queue'] ?? 'dpoflow-cpu') : undefined,
        gpu: queues.includes('gpu') ? (values['gpu-queue'] ?? 'dpoflow-gpu') : undefined,
      },
      settings: device ? { runtime: { executionProvider: device } } : {},
      shutdownGraceTime: `${grace} seconds`,
      identity: `${process.pid}@${hostname()}`,
    });
  } finally {
    await shutdownRuntime();
  }
  return exitCodes.ok;
}

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run pipeline workers for the CPU and/or GPU task queue',
  usage,
  run,
};
