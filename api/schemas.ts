// The HTTP API's bodies as zod schemas: the single source of the types and of /openapi.json (with the config's
// own schema as the run request body).

import { z } from 'zod';
import { configJsonSchema } from '../config/schema.ts';

export const errorSchema = z
  .object({
    error: z.string().describe('machine-readable code, e.g. invalid_config, not_found, unauthorized'),
    message: z.string(),
    issues: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .describe('one entry per invalid field, by dotted path'),
  })
  .describe('an error');

export const runCreatedSchema = z.object({
  run_id: z.string(),
  started: z.boolean().describe('false when the idempotency key or run id named a run that already exists'),
  status_url: z.string(),
});

export const runStatusSchema = z.object({
  run_id: z.string(),
  status: z.string().describe('RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED or TIMED_OUT'),
  stage: z.string().optional(),
  progress: z
    .record(z.string(), z.unknown())
    .optional()
    .describe("the running stage's last heartbeat (training: step, totalSteps, loss, accuracy, checkpoint)"),
  metrics: z.record(z.string(), z.number()).optional().describe('held-out metrics of the trained policy'),
  evaluation: z.record(z.string(), z.unknown()).optional(),
  result: z.record(z.string(), z.unknown()).optional().describe("the stages' outputs once completed"),
  failure: z.string().optional(),
  start_time: z.string(),
  close_time: z.string().optional(),
});

export const runListSchema = z.object({
  runs: z.array(
    z.object({
      run_id: z.string(),
      status: z.string(),
      name: z.string().optional(),
      model: z.string().optional(),
      dataset: z.string().optional(),
      stage: z.string().optional(),
      start_time: z.string(),
    }),
  ),
  next_page_token: z.string().optional(),
});

export const artifactListSchema = z.object({
  run_id: z.string(),
  artifacts: z.array(
    z.object({
      name: z.string().describe('e.g. model/model.safetensors, metrics.jsonl, report.html'),
      uri: z.string(),
      bytes: z.number(),
      download_url: z.string().describe('presigned; expires after an hour'),
    }),
  ),
});

export const sweepRequestSchema = z.strictObject({
  config: z.record(z.string(), z.unknown()).describe('a run config (as POST /v1/runs takes)'),
  grid: z
    .record(z.string(), z.array(z.unknown()).min(1))
    .describe('dotted setting path → values, e.g. {"training.beta": [0.05, 0.1]}'),
  metric: z.string().default('eval_rewards/accuracies'),
  mode: z.enum(['max', 'min']).default('max'),
  max_concurrent: z.int().gte(1).default(2),
});

const json = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'output' });

/** OpenAPI 3.1 for the API, generated from the schemas above and the config's. */
export function openApiDocument(): Record<string, unknown> {
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
  const jsonContent = (schema: unknown) => ({ 'application/json': { schema } });
  const errors = {
    '400': { description: 'invalid request', content: jsonContent(ref('Error')) },
    '401': { description: 'missing bearer token', content: jsonContent(ref('Error')) },
    '403': { description: 'token not accepted', content: jsonContent(ref('Error')) },
  };
  const runId = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
  return {
    openapi: '3.1.0',
    info: { title: 'dpoflow', version: '1', description: 'DPO fine-tuning runs on Temporal' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Config: configJsonSchema(),
        Error: json(errorSchema),
        RunCreated: json(runCreatedSchema),
        RunStatus: json(runStatusSchema),
        RunList: json(runListSchema),
        ArtifactList: json(artifactListSchema),
        SweepRequest: json(sweepRequestSchema),
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/v1/runs': {
        post: {
          summary: 'start a pipeline run',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              schema: { type: 'string' },
              description:
                'the same key always names the same run: a retried request never starts a second one',
            },
          ],
          requestBody: { required: true, content: jsonContent(ref('Config')) },
          responses: {
            '201': { description: 'started', content: jsonContent(ref('RunCreated')) },
            '200': {
              description: 'the run this key already started',
              content: jsonContent(ref('RunCreated')),
            },
            ...errors,
          },
        },
        get: {
          summary: 'list runs, newest first',
          parameters: ['status', 'model', 'dataset', 'page_token'].map((name) => ({
            name,
            in: 'query',
            required: false,
            schema: { type: 'string' },
          })),
          responses: { '200': { description: 'runs', content: jsonContent(ref('RunList')) }, ...errors },
        },
      },
      '/v1/runs/{id}': {
        get: {
          summary: "a run's status, stage, progress and latest metrics",
          parameters: [runId],
          responses: {
            '200': { description: 'status', content: jsonContent(ref('RunStatus')) },
            '404': { description: 'no such run', content: jsonContent(ref('Error')) },
            ...errors,
          },
        },
      },
      '/v1/runs/{id}/cancel': {
        post: {
          summary: 'cancel a run (training checkpoints first)',
          parameters: [runId],
          responses: {
            '202': { description: 'cancellation requested' },
            '404': { description: 'no such run', content: jsonContent(ref('Error')) },
            ...errors,
          },
        },
      },
      '/v1/runs/{id}/artifacts': {
        get: {
          summary: "a completed run's artifacts with presigned download URLs",
          parameters: [runId],
          responses: {
            '200': { description: 'artifacts', content: jsonContent(ref('ArtifactList')) },
            '404': { description: 'no such run', content: jsonContent(ref('Error')) },
            '409': { description: 'not completed yet', content: jsonContent(ref('Error')) },
            ...errors,
          },
        },
      },
      '/v1/runs/{id}/report': {
        get: {
          summary: "the run's evaluation report",
          parameters: [runId],
          responses: {
            '200': { description: 'report.html', content: { 'text/html': { schema: { type: 'string' } } } },
            '404': { description: 'no such run', content: jsonContent(ref('Error')) },
            '409': { description: 'no report yet', content: jsonContent(ref('Error')) },
            ...errors,
          },
        },
      },
      '/v1/sweeps': {
        post: {
          summary: 'start a sweep of child runs over a grid',
          requestBody: { required: true, content: jsonContent(ref('SweepRequest')) },
          responses: {
            '201': { description: 'started', content: jsonContent(ref('RunCreated')) },
            ...errors,
          },
        },
      },
      '/healthz': {
        get: { summary: 'the process is up', security: [], responses: { '200': { description: 'ok' } } },
      },
      '/readyz': {
        get: {
          summary: 'Temporal is reachable',
          security: [],
          responses: { '200': { description: 'ready' }, '503': { description: 'Temporal unreachable' } },
        },
      },
      '/openapi.json': {
        get: { summary: 'this document', security: [], responses: { '200': { description: 'OpenAPI 3.1' } } },
      },
    },
  };
}
