// `doctor`: proves that a worker is polling each task queue and can write, verify and delete an artifact in
// the configured store. Deterministic orchestration only; the activities do the I/O.

import { proxyActivities } from '@temporalio/workflow';
import type { DoctorActivities, StoreProbe } from '../activities/doctor.ts';

/** A worker that never picks the task up should fail the check quickly, not hang it. */
const PROBE_TIMEOUTS = { scheduleToStartTimeout: '1 minute', startToCloseTimeout: '2 minutes' } as const;
const PROBE_RETRY = { maximumAttempts: 3, initialInterval: '1 second' } as const;

export interface DoctorInput {
  taskQueues: string[];
}

export interface DoctorReport {
  probes: StoreProbe[];
}

export async function doctor(input: DoctorInput): Promise<DoctorReport> {
  const probes = await Promise.all(
    input.taskQueues.map((taskQueue) =>
      proxyActivities<DoctorActivities>({ ...PROBE_TIMEOUTS, retry: PROBE_RETRY, taskQueue }).probeStore({
        taskQueue,
      }),
    ),
  );
  return { probes };
}
