// Pipeline workers: one process polls the CPU queue (data preparation, reference log-probs), the GPU queue
// (training, one attempt at a time: one training per GPU), or both for local use. SIGINT/SIGTERM shut down
// gracefully: running activities are cancelled, and training saves a checkpoint before its attempt ends.

import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createPipelineActivities } from '../activities/pipeline.ts';
import type { WorkerSettings } from '../activities/stage.ts';

export interface PipelineWorkerOptions {
  address: string;
  namespace: string;
  queues: { cpu?: string; gpu?: string };
  settings?: WorkerSettings;
  /** How long running activities get to finish after a shutdown signal. */
  shutdownGraceTime?: string;
  identity?: string;
}

const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface RunningWorkers {
  /** Resolves once every worker has stopped (after shutdown() or a shutdown signal). */
  done: Promise<void>;
  shutdown(): void;
}

/** Starts the workers; they stop on SIGINT/SIGTERM or shutdown(). */
export async function startPipelineWorkers(options: PipelineWorkerOptions): Promise<RunningWorkers> {
  const connection = await NativeConnection.connect({ address: options.address });
  try {
    const activities = createPipelineActivities(options.settings);
    const worker = (taskQueue: string, role: string, extra: Partial<WorkerOptions>) =>
      Worker.create({
        connection,
        namespace: options.namespace,
        taskQueue,
        activities,
        shutdownGraceTime: options.shutdownGraceTime ?? '30 seconds',
        // Heartbeats reach the server at least this often, so a cancellation reaches training within seconds
        // (the SDK's default throttle is up to 60 s).
        maxHeartbeatThrottleInterval: '2 seconds',
        ...(options.identity ? { identity: `${options.identity}/${role}` } : {}),
        ...extra,
      });
    const workers: Worker[] = [];
    // The CPU queue's worker also runs the workflows; the GPU queue's runs one activity at a time (one GPU).
    if (options.queues.cpu) workers.push(await worker(options.queues.cpu, 'cpu', { workflowsPath }));
    if (options.queues.gpu) {
      workers.push(await worker(options.queues.gpu, 'gpu', { maxConcurrentActivityTaskExecutions: 1 }));
    }
    if (workers.length === 0) throw new Error('no task queue to poll: give a CPU queue, a GPU queue or both');
    const done = Promise.all(workers.map((w) => w.run())).finally(() => connection.close());
    return {
      done: done.then(() => undefined),
      shutdown: () => {
        for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      },
    };
  } catch (error) {
    await connection.close();
    throw error;
  }
}

/** Runs until a shutdown signal; resolves once every worker has stopped. */
export async function runPipelineWorkers(options: PipelineWorkerOptions): Promise<void> {
  await (await startPipelineWorkers(options)).done;
}
