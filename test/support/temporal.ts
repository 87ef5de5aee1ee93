// Temporal for tests: one workflow bundle per test process, clients and workers on the dev server that
// test/run.ts started, and a unique task queue per test so tests never steal each other's tasks.

import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import {
  bundleWorkflowCode,
  NativeConnection,
  Runtime,
  Worker,
  type WorkflowBundle,
} from '@temporalio/worker';
import { testTemporalAddress } from './services.ts';

const workflowsPath = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));
let bundle: Promise<WorkflowBundle> | undefined;
let runtimeInstalled = false;

export interface TestTemporal {
  client: Client;
  connection: NativeConnection;
  /** A task queue name no other test uses. */
  taskQueue(purpose: string): string;
  /** A worker polling taskQueue with the repo's workflows and the given activities; shut down after the test. */
  worker(taskQueue: string, activities: object): Promise<Worker>;
}

export async function testTemporal(t: TestContext): Promise<TestTemporal | undefined> {
  const address = testTemporalAddress(t);
  if (!address) return undefined;
  if (!runtimeInstalled) {
    // Keep the SDK's per-poll logs out of the test report; warnings and errors still show.
    Runtime.install({ logger: new (await import('@temporalio/worker')).DefaultLogger('WARN') });
    runtimeInstalled = true;
  }
  bundle ??= bundleWorkflowCode({ workflowsPath, logger: Runtime.instance().logger });
  const connection = await NativeConnection.connect({ address });
  const clientConnection = await Connection.connect({ address });
  const client = new Client({ connection: clientConnection });
  const workers: { worker: Worker; running: Promise<void> }[] = [];
  t.after(async () => {
    for (const { worker } of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
    await Promise.all(workers.map(({ running }) => running));
    await connection.close();
    await clientConnection.close();
  });
  return {
    client,
    connection,
    taskQueue: (purpose) => `${purpose}-${randomUUID()}`,
    async worker(taskQueue, activities) {
      const worker = await Worker.create({
        connection,
        taskQueue,
        workflowBundle: await bundle!,
        activities,
      });
      // A worker that fails is reported by the test's own assertions; the hook only waits for it to stop.
      workers.push({ worker, running: worker.run().catch(() => undefined) });
      return worker;
    },
  };
}
