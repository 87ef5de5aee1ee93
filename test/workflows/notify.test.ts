// The completion webhook on the real stack: a run that completes and a run that fails each POST their outcome
// once, signed with HMAC-SHA256 of the body under the workers' secret.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { webhookSignature } from '../../activities/notify.ts';
import { shutdownRuntime } from '../../engine/runtime.ts';
import { pipelineConfig, pipelineStack } from '../support/pipeline.ts';

after(shutdownRuntime);

const SECRET = 'webhook-secret';

test('completion webhook: completed and failed runs, signed', { timeout: 300_000 }, async (t) => {
  const stack = await pipelineStack(t, 'notify', { settings: { webhookSecret: SECRET } });
  if (!stack) return;
  const { temporal, store, s3, queues } = stack;
  const received: { body: string; signature: string | undefined }[] = [];
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => {
      body += chunk;
    });
    request.on('end', () => {
      received.push({ body, signature: request.headers['x-dpoflow-signature'] as string | undefined });
      response.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  await store.put('inputs/empty.jsonl', '{"nope": 1}\n');
  const config = (train?: string) => ({
    ...pipelineConfig(store, {
      endpoint: s3.endpoint,
      queues,
      train,
      training: { max_steps: 4, eval_steps: 4 },
    }),
    notify: { webhook_url: url },
  });
  const run = (id: string, input: object) =>
    temporal.client.workflow.execute('dpoPipeline', {
      taskQueue: queues.cpu,
      workflowId: `${id}-${queues.cpu}`,
      args: [input],
    });

  await run('notify-ok', config());
  await assert.rejects(run('notify-bad', config('inputs/empty.jsonl')));
  assert.equal(received.length, 2);
  const outcomes = received.map(({ body, signature }) => {
    assert.equal(signature, webhookSignature(SECRET, body), 'the signature is HMAC-SHA256 of the body');
    return JSON.parse(body);
  });
  assert.equal(outcomes[0].run_id, `notify-ok-${queues.cpu}`);
  assert.equal(outcomes[0].status, 'COMPLETED');
  assert.match(outcomes[0].model_uri, /^s3:\/\/.*\/model$/);
  assert.equal(outcomes[1].status, 'FAILED');
  assert.match(outcomes[1].failure, /DatasetError|invalid row|cannot tell the format/);
});
