// Starts `temporal server start-dev` on loopback: in memory for tests, or persistent with a SQLite file.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { resolveBinaries } from './binaries.ts';
import { freePort, type ServiceProcess, startService } from './service-process.ts';

export interface TemporalDevServer extends ServiceProcess {
  /** host:port of the frontend gRPC service */
  readonly address: string;
  /** http://… of the web UI, when started with one */
  readonly uiUrl?: string;
}

export interface TemporalDevServerOptions {
  /** SQLite file for a persistent server; in memory when absent. */
  dbFile?: string;
  port?: number;
  /** Serve the web UI on this port; headless when absent. */
  uiPort?: number;
  namespace?: string;
  logDir: string;
}

export async function startTemporalDevServer(options: TemporalDevServerOptions): Promise<TemporalDevServer> {
  const { temporal } = await resolveBinaries();
  const port = options.port ?? (await freePort());
  const address = `127.0.0.1:${port}`;
  mkdirSync(options.logDir, { recursive: true });
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'warn'];
  args.push('--http-port', String(await freePort()), '--metrics-port', String(await freePort()));
  args.push('--namespace', options.namespace ?? 'default');
  if (options.dbFile) args.push('--db-filename', options.dbFile);
  if (options.uiPort) args.push('--ui-port', String(options.uiPort));
  else args.push('--headless');

  const service = await startService({
    name: 'temporal dev server',
    command: temporal,
    args,
    logFile: join(options.logDir, `temporal-${port}.log`),
    readyTimeoutMs: 120_000,
    isReady: async () => {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.workflowService.getSystemInfo({});
        return true;
      } finally {
        await connection.close();
      }
    },
  });
  return Object.assign(service, {
    address,
    uiUrl: options.uiPort ? `http://127.0.0.1:${options.uiPort}` : undefined,
  });
}
