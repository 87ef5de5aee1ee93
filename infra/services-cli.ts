// `npm run services`: a persistent local stack for development — Temporal dev server (SQLite file, web UI)
// and MinIO, both on loopback with their data under .dpoflow/ — until Ctrl-C. Prints the settings to use.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startMinio } from './minio-server.ts';
import { startTemporalDevServer } from './temporal-dev-server.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '.dpoflow' },
    'temporal-port': { type: 'string', default: '7233' },
    'ui-port': { type: 'string', default: '8233' },
    'minio-port': { type: 'string', default: '9000' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run services -- [--dir .dpoflow] [--temporal-port 7233] [--ui-port 8233] [--minio-port 9000]
Starts a persistent Temporal dev server (SQLite at <dir>/temporal.db, web UI) and MinIO (data in <dir>/minio)
on 127.0.0.1 and keeps them running until interrupted.`);
  process.exit(0);
}
const dir = resolve(values.dir!);
mkdirSync(dir, { recursive: true });
const logDir = join(dir, 'logs');
const [temporal, minio] = await Promise.all([
  startTemporalDevServer({
    dbFile: join(dir, 'temporal.db'),
    port: Number(values['temporal-port']),
    uiPort: Number(values['ui-port']),
    logDir,
  }),
  startMinio({
    dataDir: join(dir, 'minio'),
    logDir,
    port: Number(values['minio-port']),
    secretAccessKey: 'dpoflow-local-secret', // a fixed key so the settings below stay valid across restarts
  }),
]);
console.log(`Temporal  ${temporal.address}  (web UI ${temporal.uiUrl}; history in ${join(dir, 'temporal.db')})
MinIO     ${minio.endpoint}  (data in ${join(dir, 'minio')}; logs in ${logDir})

  export TEMPORAL_ADDRESS=${temporal.address}
  export AWS_ENDPOINT_URL_S3=${minio.endpoint} AWS_ACCESS_KEY_ID=${minio.accessKeyId} AWS_SECRET_ACCESS_KEY=${minio.secretAccessKey}

Ctrl-C stops both.`);
const stop = async () => {
  await Promise.all([temporal.stop(), minio.stop()]);
  process.exit(0);
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
