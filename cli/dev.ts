// `dpoflow dev`: the embedded stack in one command — a Temporal dev server (SQLite file, web UI), MinIO when
// asked for, workers for both queues, and the HTTP API — until Ctrl-C. Runs started with `dpoflow run` or the
// API against it survive restarts of `dev` (the history and the artifacts are files under --dir).

import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { buildApi } from '../api/server.ts';
import { connectRuns } from '../client/runs.ts';
import { temporalSchema } from '../config/schema.ts';
import { shutdownRuntime } from '../engine/runtime.ts';
import { startMinio } from '../infra/minio-server.ts';
import { freePort } from '../infra/service-process.ts';
import { startTemporalDevServer } from '../infra/temporal-dev-server.ts';
import { startPipelineWorkers } from '../workers/run.ts';
import { type Command, exitCodes, stringOptions, UsageError } from './command.ts';

const usage = `usage: dpoflow dev [--dir .dpoflow/dev] [--api-port 8080] [--temporal-port 7233] [--ui-port 8233] [--minio]

Starts a Temporal dev server (history in <dir>/temporal.db, web UI), workers for the cpu and gpu queues
(dpoflow-cpu, dpoflow-gpu), and the HTTP API, all on 127.0.0.1, and prints how to use them. With --minio it
also starts MinIO (data in <dir>/minio) and gives the workers and the API its credentials. The API token is
DPOFLOW_API_TOKENS' first, or a new random one that is printed. Ctrl-C stops everything.

options:
  --dir DIR            where the stack keeps its files (default .dpoflow/dev)
  --api-port N         HTTP API port (default 8080; 0 = any free port)
  --temporal-port N    Temporal frontend port (default 7233; 0 = any free port)
  --ui-port N          Temporal web UI port (default 8233; 0 = any free port)
  --minio              also run MinIO for s3:// stores`;

function port(value: string | undefined, fallback: number, name: string): number {
  const number = Number(value ?? fallback);
  if (!Number.isInteger(number) || number < 0 || number > 65535)
    throw new UsageError(`--${name}: expected a port 0-65535, received "${value}"`);
  return number;
}

async function run(args: string[]): Promise<number> {
  const withMinio = args.includes('--minio');
  const values = stringOptions(
    args.filter((arg) => arg !== '--minio'),
    ['dir', 'api-port', 'temporal-port', 'ui-port'],
  );
  // Every flag is checked before anything starts.
  const ports = {
    api: port(values['api-port'], 8080, 'api-port'),
    temporal: port(values['temporal-port'], 7233, 'temporal-port'),
    ui: port(values['ui-port'], 8233, 'ui-port'),
  };
  const dir = resolve(values.dir ?? '.dpoflow/dev');
  await mkdir(dir, { recursive: true });
  const logDir = join(dir, 'logs');
  const temporalPort = ports.temporal || (await freePort());
  const uiPort = ports.ui || (await freePort());
  const temporal = await startTemporalDevServer({
    dbFile: join(dir, 'temporal.db'),
    port: temporalPort,
    uiPort,
    logDir,
  });
  const minio = withMinio
    ? await startMinio({ dataDir: join(dir, 'minio'), logDir, secretAccessKey: 'dpoflow-local-secret' })
    : undefined;
  if (minio) {
    // The workers and the API read S3 settings from the environment, as they would in production.
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_S3: minio.endpoint,
      AWS_ACCESS_KEY_ID: minio.accessKeyId,
      AWS_SECRET_ACCESS_KEY: minio.secretAccessKey,
    });
  }
  const queues = temporalSchema.parse({}).task_queues;
  const workers = await startPipelineWorkers({ address: temporal.address, namespace: 'default', queues });
  const runs = await connectRuns(temporalSchema.parse({ address: temporal.address }));
  const token =
    (process.env.DPOFLOW_API_TOKENS ?? '').split(',')[0]?.trim() || randomBytes(16).toString('hex');
  const api = buildApi({ runs, tokens: [token] });
  const apiUrl = await api.listen({ port: ports.api, host: '127.0.0.1' });
  console.log(`dpoflow dev is up (Ctrl-C stops it):
  Temporal  ${temporal.address}   web UI ${temporal.uiUrl}   history ${join(dir, 'temporal.db')}
  workers   ${queues.cpu}, ${queues.gpu}
  API       ${apiUrl}   token ${token}${minio ? `\n  MinIO     ${minio.endpoint}   data ${join(dir, 'minio')}` : ''}

  export TEMPORAL_ADDRESS=${temporal.address}${minio ? ` AWS_ENDPOINT_URL_S3=${minio.endpoint} AWS_ACCESS_KEY_ID=${minio.accessKeyId} AWS_SECRET_ACCESS_KEY=${minio.secretAccessKey}` : ''}
  dpoflow run --config <file>            # or: curl -H 'Authorization: Bearer ${token}' ${apiUrl}/v1/runs`);
  // Ctrl-C or SIGTERM stops the workers (running training checkpoints first); the rest follows them.
  process.once('SIGINT', workers.shutdown);
  process.once('SIGTERM', workers.shutdown);
  await workers.done;
  await api.close();
  await runs.close();
  await Promise.all([temporal.stop(), minio?.stop()]);
  await shutdownRuntime();
  return exitCodes.ok;
}

export const devCommand: Command = {
  name: 'dev',
  summary: 'run the whole stack locally (Temporal, workers, API)',
  usage,
  run,
};
