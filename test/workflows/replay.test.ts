// Histories recorded from the integration tests replay against the current workflow code, so a change that
// would break running workflows (a reordered or renamed activity, a new non-deterministic branch) fails here.
// Refresh them with DPOFLOW_RECORD_HISTORIES=1 npm test -- test/workflows/dpo-pipeline.test.ts when a change
// is meant to be incompatible (and version the workflow for runs in flight).

import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import protos from '@temporalio/proto';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';

const historiesDir = join(import.meta.dirname, '..', 'fixtures', 'histories');
const workflowsPath = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));

test('recorded pipeline histories replay against the current workflows', async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const files = (await readdir(historiesDir)).filter((name) => name.endsWith('.binpb'));
  assert.ok(files.length > 0, `no recorded histories in ${historiesDir}`);
  for (const file of files) {
    const history = protos.temporal.api.history.v1.History.decode(await readFile(join(historiesDir, file)));
    assert.ok(history.events!.length > 10, `${file} is too short to mean anything`);
    await Worker.runReplayHistory({ workflowsPath }, history, file);
  }
});
