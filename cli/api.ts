// `dpoflow api`: the HTTP API server (api/server.ts) until SIGINT/SIGTERM.

import { readFile } from 'node:fs/promises';
import { buildApi } from '../api/server.ts';
import { connectRuns } from '../client/runs.ts';
import {
  type Command,
  connectionHelp,
  exitCodes,
  stringOptions,
  temporalSettings,
  UsageError,
} from './command.ts';

const usage = `usage: dpoflow api [--port 8080] [--host 127.0.0.1] [--tokens-file FILE] [options]

Serves the HTTP API: POST /v1/runs, GET /v1/runs[/{id}[/artifacts|/report]], POST /v1/runs/{id}/cancel,
POST /v1/sweeps, /healthz, /readyz and /openapi.json. Requests need "Authorization: Bearer <token>" with a
token from DPOFLOW_API_TOKENS (comma-separated) or --tokens-file (one per line). S3 credentials for artifact
links come from the environment.

options:
  --port N             port to listen on (default 8080; 0 = any free port)
  --host ADDRESS       address to bind (default 127.0.0.1)
  --tokens-file FILE   accepted bearer tokens, one per line
${connectionHelp}`;

async function run(args: string[]): Promise<number> {
  const values = stringOptions(args, ['port', 'host', 'tokens-file', 'address', 'namespace']);
  const port = Number(values.port ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port: expected 0-65535, received "${values.port}"`);
  const fromFile = values['tokens-file'] ? (await readFile(values['tokens-file'], 'utf8')).split('\n') : [];
  const tokens = [...fromFile, ...(process.env.DPOFLOW_API_TOKENS ?? '').split(',')]
    .map((t) => t.trim())
    .filter(Boolean);
  if (tokens.length === 0) {
    throw new UsageError(
      'no API tokens: set DPOFLOW_API_TOKENS or --tokens-file (every request would be refused)',
    );
  }
  const runs = await connectRuns(temporalSettings(values));
  const app = buildApi({ runs, tokens });
  const url = await app.listen({ port, host: values.host ?? '127.0.0.1' });
  console.error(`dpoflow api: listening on ${url} (OpenAPI at ${url}/openapi.json)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await app.close();
  await runs.close();
  return exitCodes.ok;
}

export const apiCommand: Command = { name: 'api', summary: 'serve the HTTP API', usage, run };
