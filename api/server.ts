// The HTTP API (Fastify) over the typed runs client: start, list, inspect, cancel runs, fetch their artifacts
// and report, start sweeps; bearer-token auth; JSON errors with field paths; /openapi.json generated from the
// zod schemas. No state of its own: Temporal holds the runs, the store their artifacts.

import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { z } from 'zod';
import {
  cancelRun,
  listRuns,
  RunNotFoundError,
  type RunStatus,
  type RunsClient,
  runStatus,
  startRun,
  startSweep,
} from '../client/runs.ts';
import { ConfigError } from '../config/errors.ts';
import { parseConfig } from '../config/load.ts';
import { openStore } from '../store/index.ts';
import type { S3StoreOptions } from '../store/s3-store.ts';
import { openApiDocument, sweepRequestSchema } from './schemas.ts';

export interface ApiOptions {
  runs: RunsClient;
  /** Accepted bearer tokens; empty = every request is refused (401/403), never open by accident. */
  tokens: readonly string[];
  /** S3 settings for reading artifacts (credentials from the environment by default). */
  s3?: S3StoreOptions;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimit?: number;
  /** Resolves relative locations in configs (default the server's working directory). */
  cwd?: string;
}

class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly issues?: { path: string; message: string }[],
  ) {
    super(message);
  }
}

const PAGE_SIZE = 50;

export function buildApi(options: ApiOptions): FastifyInstance {
  const app = Fastify({ bodyLimit: options.bodyLimit ?? 1024 * 1024, logger: false });
  const digests = options.tokens.map(tokenDigest);

  app.setErrorHandler((error: Error & { statusCode?: number; validation?: unknown }, _request, reply) => {
    if (error instanceof ApiError) {
      return reply
        .code(error.statusCode)
        .send({ error: error.code, message: error.message, issues: error.issues });
    }
    if (error instanceof RunNotFoundError)
      return reply.code(404).send({ error: 'not_found', message: error.message });
    if (error.statusCode === 413)
      return reply.code(413).send({ error: 'body_too_large', message: error.message });
    if (error.statusCode && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: 'bad_request', message: error.message });
    }
    return reply.code(500).send({ error: 'internal', message: error.message });
  });

  // Every route but the probes and the document needs a bearer token: missing → 401, not accepted → 403.
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (['/healthz', '/readyz', '/openapi.json'].includes(request.url.split('?')[0])) return;
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : undefined;
    if (!token) {
      reply.header('www-authenticate', 'Bearer');
      throw new ApiError(401, 'unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
    }
    const given = tokenDigest(token);
    // Comparing digests of equal length in constant time reveals nothing about a token's prefix or length.
    if (!digests.some((digest) => timingSafeEqual(digest, given))) {
      throw new ApiError(403, 'forbidden', 'the bearer token is not accepted');
    }
  });

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_request, reply) => {
    try {
      await options.runs.client.workflowService.getSystemInfo({});
      return { ok: true };
    } catch (error) {
      return reply.code(503).send({ error: 'unavailable', message: `Temporal: ${(error as Error).message}` });
    }
  });
  app.get('/openapi.json', async () => openApiDocument());

  app.post('/v1/runs', async (request, reply) => {
    const config = configFrom(request.body, options.cwd);
    const key = request.headers['idempotency-key'];
    const runId =
      typeof key === 'string' && key ? `run-${tokenDigest(key).toString('hex').slice(0, 24)}` : undefined;
    const started = await startRun(options.runs, config, { runId, once: runId !== undefined });
    return reply
      .code(started.started ? 201 : 200)
      .send({ run_id: started.runId, started: started.started, status_url: `/v1/runs/${started.runId}` });
  });

  app.get('/v1/runs', async (request) => {
    const query = request.query as Record<string, string | undefined>;
    const offset = query.page_token ? Number.parseInt(query.page_token, 10) || 0 : 0;
    const all = (
      await listRuns(options.runs, { status: query.status, limit: offset + PAGE_SIZE + 1 })
    ).filter(
      (run) =>
        (!query.model || run.model === query.model) && (!query.dataset || run.dataset === query.dataset),
    );
    const page = all.slice(offset, offset + PAGE_SIZE);
    return {
      runs: page.map((run) => ({
        run_id: run.runId,
        status: run.status,
        name: run.name,
        model: run.model,
        dataset: run.dataset,
        stage: run.stage,
        start_time: run.startTime.toISOString(),
      })),
      next_page_token: all.length > offset + PAGE_SIZE ? String(offset + PAGE_SIZE) : undefined,
    };
  });

  app.get('/v1/runs/:id', async (request) => statusBody(await runStatus(options.runs, runIdOf(request))));

  app.post('/v1/runs/:id/cancel', async (request, reply) => {
    await cancelRun(options.runs, runIdOf(request));
    return reply.code(202).send({ run_id: runIdOf(request), cancel_requested: true });
  });

  app.get('/v1/runs/:id/artifacts', async (request) => {
    const status = await completed(options.runs, runIdOf(request));
    const { trained, evaluation } = status.result!;
    const folders: [string, string][] = [
      ['model', trained.modelUri],
      ['', trained.metricsUri.replace(/\/metrics\.jsonl$/, '')],
      ...(evaluation ? ([['evaluation', evaluation.uri]] as [string, string][]) : []),
    ];
    const artifacts = [];
    for (const [label, uri] of folders) {
      const store = openStore(uri, { s3: options.s3 });
      for await (const entry of store.list()) {
        if (label === '' && !/^(metrics\.jsonl|trainer_state\.json)$/.test(entry.key)) continue;
        artifacts.push({
          name: label ? `${label}/${entry.key}` : entry.key,
          uri: store.uri(entry.key),
          bytes: entry.bytes,
          download_url: await store.downloadUrl(entry.key, 3600),
        });
      }
    }
    return { run_id: status.runId, artifacts };
  });

  app.get('/v1/runs/:id/report', async (request, reply) => {
    const status = await completed(options.runs, runIdOf(request));
    const evaluation = status.result!.evaluation;
    if (!evaluation) throw new ApiError(409, 'no_report', `run ${status.runId} ran without evaluation`);
    const html = await openStore(evaluation.uri, { s3: options.s3 }).get('report.html');
    return reply.type('text/html; charset=utf-8').send(Buffer.from(html));
  });

  app.post('/v1/sweeps', async (request, reply) => {
    const parsed = sweepRequestSchema.safeParse(request.body);
    if (!parsed.success) throw invalidBody(parsed.error);
    const { config: raw, grid, metric, mode, max_concurrent } = parsed.data;
    const config = configFrom(raw, options.cwd);
    const key = request.headers['idempotency-key'];
    const suffix =
      typeof key === 'string' && key
        ? tokenDigest(key).toString('hex').slice(0, 24)
        : tokenDigest(JSON.stringify([config, grid, metric, mode]))
            .toString('hex')
            .slice(0, 24);
    const started = await startSweep(
      options.runs,
      { config, grid, metric, mode, maxConcurrent: max_concurrent },
      { runId: `sweep-${suffix}`, once: typeof key === 'string' && key !== '' },
    );
    return reply
      .code(started.started ? 201 : 200)
      .send({ run_id: started.runId, started: started.started, status_url: `/v1/runs/${started.runId}` });
  });

  return app;
}

function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

function runIdOf(request: FastifyRequest): string {
  return (request.params as { id: string }).id;
}

function configFrom(body: unknown, cwd?: string) {
  try {
    return parseConfig(body, { env: {}, cwd: cwd ?? process.cwd(), source: 'request body' });
  } catch (error) {
    if (error instanceof ConfigError) {
      throw new ApiError(400, 'invalid_config', 'invalid dpoflow config', [
        ...error.issues.map((issue) => ({ path: issue.path, message: issue.message })),
      ]);
    }
    throw error;
  }
}

function invalidBody(error: z.ZodError): ApiError {
  return new ApiError(
    400,
    'invalid_body',
    'invalid request body',
    error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
  );
}

async function completed(runs: RunsClient, runId: string): Promise<RunStatus> {
  const status = await runStatus(runs, runId);
  if (status.status !== 'COMPLETED' || !status.result) {
    throw new ApiError(409, 'not_completed', `run ${runId} is ${status.status.toLowerCase()}, not completed`);
  }
  return status;
}

function statusBody(status: RunStatus) {
  return {
    run_id: status.runId,
    status: status.status,
    stage: status.stage,
    progress: status.heartbeat,
    metrics: status.result?.trained.evaluation,
    evaluation: status.result?.evaluation?.metrics,
    result: status.result,
    failure: status.failure,
    start_time: status.startTime.toISOString(),
    close_time: status.closeTime?.toISOString(),
  };
}
