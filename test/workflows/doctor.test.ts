// The doctor workflow on the real Temporal dev server with a worker per task queue, writing to real MinIO.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { createDoctorActivities } from '../../activities/doctor.ts';
import { openStore } from '../../store/index.ts';
import { openTestStore } from '../store/backends.ts';
import { testTemporal } from '../support/temporal.ts';

test('doctor probes the store from a worker on each task queue', async (t) => {
  const temporal = await testTemporal(t);
  const testStore = await openTestStore(t, 's3');
  if (!temporal || !testStore) return;
  const cpuQueue = temporal.taskQueue('doctor-cpu');
  const gpuQueue = temporal.taskQueue('doctor-gpu');
  const activities = createDoctorActivities({ store: testStore.store });
  await temporal.worker(cpuQueue, activities);
  await temporal.worker(gpuQueue, activities);

  const report = await temporal.client.workflow.execute('doctor', {
    taskQueue: cpuQueue,
    workflowId: `doctor-${cpuQueue}`,
    args: [{ taskQueues: [cpuQueue, gpuQueue] }],
  });

  assert.deepEqual(
    report.probes.map((probe: { taskQueue: string }) => probe.taskQueue),
    [cpuQueue, gpuQueue],
  );
  for (const probe of report.probes) {
    assert.ok(probe.ref.uri.startsWith(`${testStore.rootUri}/doctor/sha256/`), probe.ref.uri);
    assert.match(probe.ref.sha256, /^[0-9a-f]{64}$/);
    assert.ok(probe.ref.bytes > 0);
    assert.equal(await testStore.store.exists(probe.ref.uri), false, 'the probe object is cleaned up');
  }
  const history = await temporal.client.workflow.getHandle(`doctor-${cpuQueue}`).fetchHistory();
  assert.ok(history.events && history.events.length > 0);
});

test('doctor fails with the store error when the bucket does not exist, without endless retries', async (t) => {
  const temporal = await testTemporal(t);
  const testStore = await openTestStore(t, 's3');
  if (!temporal || !testStore) return;
  const missing = openStore(`s3://dpoflow-missing-${Date.now()}/x`, testStore.options);
  const taskQueue = temporal.taskQueue('doctor-missing');
  await temporal.worker(taskQueue, createDoctorActivities({ store: missing }));

  const error = await temporal.client.workflow
    .execute('doctor', { taskQueue, workflowId: `doctor-${taskQueue}`, args: [{ taskQueues: [taskQueue] }] })
    .catch((caught: unknown) => caught);
  assert.ok(error instanceof WorkflowFailedError);
  const activityFailure = error.cause;
  assert.ok(activityFailure instanceof ActivityFailure);
  const cause = activityFailure.cause;
  assert.ok(cause instanceof ApplicationFailure);
  assert.equal(cause.type, 'StoreError.NoSuchBucket');
  assert.equal(cause.nonRetryable, true);
  assert.match(cause.message, /does not exist/);
});
