// The doctor stage: a worker proves it can write, verify and delete an artifact in the configured store.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { ApplicationFailure } from '@temporalio/activity';
import type { ArtifactRef, ArtifactStore } from '../store/types.ts';
import { sortingFailures } from './failures.ts';

export interface StoreProbe {
  taskQueue: string;
  host: string;
  pid: number;
  ref: ArtifactRef;
  roundTripMs: number;
}

export interface DoctorActivities {
  probeStore(input: { taskQueue: string }): Promise<StoreProbe>;
}

export function createDoctorActivities(deps: { store: ArtifactStore }): DoctorActivities {
  return {
    probeStore: ({ taskQueue }) =>
      sortingFailures(async () => {
        const started = performance.now();
        // Unique content, so the probe really travels to the store instead of hitting an existing object.
        const body = JSON.stringify({ probe: randomUUID(), taskQueue, host: hostname() });
        const { ref } = await deps.store.putContentAddressed('doctor', body, { format: 'dpoflow.probe.v1' });
        const verdict = await deps.store.verify(ref, { rehash: true });
        if (!verdict.ok) {
          throw ApplicationFailure.nonRetryable(`store probe failed: ${verdict.message}`, 'StoreIntegrity');
        }
        await deps.store.delete(ref.uri);
        return {
          taskQueue,
          host: hostname(),
          pid: process.pid,
          ref,
          roundTripMs: performance.now() - started,
        };
      }),
  };
}
