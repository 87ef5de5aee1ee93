// Starts a MinIO server on loopback with its own data folder and root credentials.

import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { resolveBinaries } from './binaries.ts';
import { freePort, type ServiceProcess, startService } from './service-process.ts';

export interface MinioServer extends ServiceProcess {
  /** http://127.0.0.1:port */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface MinioServerOptions {
  dataDir: string;
  logDir: string;
  port?: number;
  accessKeyId?: string;
  secretAccessKey?: string;
}

export async function startMinio(options: MinioServerOptions): Promise<MinioServer> {
  const { minio } = await resolveBinaries();
  const port = options.port ?? (await freePort());
  const endpoint = `http://127.0.0.1:${port}`;
  const accessKeyId = options.accessKeyId ?? 'dpoflow';
  const secretAccessKey = options.secretAccessKey ?? randomBytes(18).toString('base64url');
  mkdirSync(options.dataDir, { recursive: true });
  mkdirSync(options.logDir, { recursive: true });
  const consolePort = await freePort();

  const service = await startService({
    name: 'minio',
    command: minio,
    args: [
      'server',
      options.dataDir,
      '--address',
      `127.0.0.1:${port}`,
      '--console-address',
      `127.0.0.1:${consolePort}`,
      '--quiet',
    ],
    env: {
      ...process.env,
      MINIO_ROOT_USER: accessKeyId,
      MINIO_ROOT_PASSWORD: secretAccessKey,
      MINIO_BROWSER: 'off',
      MINIO_UPDATE: 'off',
    },
    logFile: join(options.logDir, `minio-${port}.log`),
    isReady: async () => (await fetch(`${endpoint}/minio/health/ready`)).ok,
  });
  return Object.assign(service, { endpoint, accessKeyId, secretAccessKey });
}
