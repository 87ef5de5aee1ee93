// The typed client for pipeline runs, over Temporal's: start (idempotent by run id), status with live training
// progress, list, cancel, and the evaluation report. The CLI (and later the HTTP API) are thin over this.

import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { rootMessage } from '../activities/failure-types.ts';
import { configDigest, redactSecrets } from '../config/load.ts';
import type { DpoflowConfig, TemporalConfig } from '../config/schema.ts';
import type { PipelineProgress, PipelineResult } from '../workflows/dpo-pipeline.ts';
import type { SweepInput } from '../workflows/sweep.ts';

export interface RunsClient {
  client: Client;
  close(): Promise<void>;
}

export async function connectRuns(temporal: TemporalConfig): Promise<RunsClient> {
  const connection = await Connection.connect({ address: temporal.address });
  return {
    client: new Client({ connection, namespace: temporal.namespace }),
    close: () => connection.close(),
  };
}

/** The run id a config gets unless one is given: its name and a digest of everything in it. */
export function defaultRunId(config: DpoflowConfig): string {
  return `${config.name}-${configDigest(config).slice(0, 12)}`;
}

export interface StartedRun {
  runId: string;
  /** False when a run with this id was already going: the same run is returned, none is started. */
  started: boolean;
}

/**
 * Starts dpoPipeline on the CPU queue. Secrets never enter Temporal's history (workers take S3 credentials
 * from their environment). A run id that is running is followed, not started again; with `once`, an id that
 * ever ran (an idempotency key's) is never started again either.
 */
export async function startRun(
  runs: RunsClient,
  config: DpoflowConfig,
  options: { runId?: string; once?: boolean } = {},
): Promise<StartedRun> {
  return startWorkflow(runs, 'dpoPipeline', [redactSecrets(config)], {
    runId: options.runId ?? defaultRunId(config),
    once: options.once,
    taskQueue: config.temporal.task_queues.cpu,
    memo: { name: config.name, model: config.model.uri, dataset: config.dataset.train, stage: 'queued' },
  });
}

/** Starts `sweep` (child runs over a grid) on the CPU queue, with the same id rules as startRun. */
export async function startSweep(
  runs: RunsClient,
  input: Omit<SweepInput, 'config'> & { config: DpoflowConfig },
  options: { runId: string; once?: boolean },
): Promise<StartedRun> {
  return startWorkflow(runs, 'sweep', [{ ...input, config: redactSecrets(input.config) }], {
    ...options,
    taskQueue: input.config.temporal.task_queues.cpu,
    memo: { name: input.config.name, model: input.config.model.uri, dataset: input.config.dataset.train },
  });
}

async function startWorkflow(
  { client }: RunsClient,
  workflowType: string,
  args: unknown[],
  options: { runId: string; once?: boolean; taskQueue: string; memo: Record<string, unknown> },
): Promise<StartedRun> {
  const { runId } = options;
  const running = await client.workflow
    .getHandle(runId)
    .describe()
    .then((description) => description.status.name === 'RUNNING')
    .catch((error) => {
      if (error instanceof WorkflowNotFoundError) return false;
      throw error;
    });
  if (running) return { runId, started: false };
  try {
    // USE_EXISTING also covers a start racing this one: both get the same run.
    await client.workflow.start(workflowType, {
      taskQueue: options.taskQueue,
      workflowId: runId,
      args,
      workflowIdConflictPolicy: 'USE_EXISTING',
      ...(options.once ? { workflowIdReusePolicy: 'REJECT_DUPLICATE' as const } : {}),
      memo: options.memo,
    });
  } catch (error) {
    if (options.once && error instanceof WorkflowExecutionAlreadyStartedError)
      return { runId, started: false };
    throw error;
  }
  return { runId, started: true };
}

export interface RunStatus {
  runId: string;
  /** Temporal's status: RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED, TIMED_OUT, … */
  status: string;
  stage?: PipelineProgress['stage'];
  /** The running activity's last heartbeat (training: step, totalSteps, loss, accuracy, checkpoint). */
  heartbeat?: Record<string, unknown>;
  progress?: PipelineProgress;
  result?: PipelineResult;
  /** Why a failed run failed, as the workflow reported it. */
  failure?: string;
  startTime: Date;
  closeTime?: Date;
}

export class RunNotFoundError extends Error {
  override readonly name = 'RunNotFoundError';
}

export async function runStatus({ client }: RunsClient, runId: string): Promise<RunStatus> {
  const handle = client.workflow.getHandle(runId);
  let description: Awaited<ReturnType<typeof handle.describe>>;
  try {
    description = await handle.describe();
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new RunNotFoundError(`no run with id "${runId}"`);
    throw error;
  }
  const status: RunStatus = {
    runId,
    status: description.status.name,
    startTime: description.startTime,
    closeTime: description.closeTime,
    stage: (description.memo?.stage as PipelineProgress['stage'] | undefined) ?? undefined,
  };
  const details = description.raw.pendingActivities?.[0]?.heartbeatDetails?.payloads?.[0]?.data;
  if (details) status.heartbeat = JSON.parse(new TextDecoder().decode(details));
  if (description.status.name === 'RUNNING') {
    status.progress = await handle.query<PipelineProgress>('progress').catch(() => undefined);
    status.stage = status.progress?.stage ?? status.stage;
  } else if (description.status.name === 'COMPLETED') {
    status.result = (await handle.result()) as PipelineResult;
  } else if (description.status.name === 'FAILED') {
    status.failure = await handle.result().then(
      () => undefined,
      (error: Error) => rootMessage(error),
    );
  }
  return status;
}

export interface RunSummary {
  runId: string;
  status: string;
  name?: string;
  model?: string;
  dataset?: string;
  stage?: string;
  startTime: Date;
}

/** Pipeline runs, newest first; `status` filters by Temporal status (e.g. Running, Completed). */
export async function listRuns(
  { client }: RunsClient,
  options: { status?: string; limit?: number } = {},
): Promise<RunSummary[]> {
  const query = [`WorkflowType = 'dpoPipeline'`];
  if (options.status) query.push(`ExecutionStatus = '${options.status.replace(/'/g, '')}'`);
  const runs: RunSummary[] = [];
  for await (const run of client.workflow.list({ query: query.join(' AND ') })) {
    runs.push({
      runId: run.workflowId,
      status: run.status.name,
      name: run.memo?.name as string | undefined,
      model: run.memo?.model as string | undefined,
      dataset: run.memo?.dataset as string | undefined,
      stage: run.memo?.stage as string | undefined,
      startTime: run.startTime,
    });
    if (runs.length >= (options.limit ?? 100)) break;
  }
  return runs;
}

export async function cancelRun({ client }: RunsClient, runId: string): Promise<void> {
  try {
    await client.workflow.getHandle(runId).cancel();
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new RunNotFoundError(`no run with id "${runId}"`);
    throw error;
  }
}
