// The test command (`npm test`): starts a Temporal dev server (in memory) and MinIO on loopback, runs every
// test/**/*.test.ts (or the files/folders given as arguments) with node's test runner, then stops both.
// With CI=true a service that cannot start fails the run; elsewhere the tests that need it skip, loudly.

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { type MinioServer, startMinio } from '../infra/minio-server.ts';
import { startTemporalDevServer, type TemporalDevServer } from '../infra/temporal-dev-server.ts';
import { serviceEnv } from './support/services.ts';

const root = join(import.meta.dirname, '..');
const isCI = process.env.CI === 'true';

function testFiles(paths: string[]): string[] {
  const found: string[] = [];
  const walk = (path: string) => {
    if (statSync(path).isDirectory()) {
      for (const entry of readdirSync(path).sort()) walk(join(path, entry));
    } else if (path.endsWith('.test.ts')) {
      found.push(relative(root, path));
    }
  };
  for (const path of paths.length ? paths : [join(root, 'test')]) walk(path);
  return found;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const files = testFiles(args.filter((arg) => !arg.startsWith('--')));
  const runnerFlags = args.filter((arg) => arg.startsWith('--'));
  const workDir = mkdtempSync(join(tmpdir(), 'dpoflow-test-'));
  // The AWS SDK's notice that future releases need Node 22 would otherwise repeat in every test process.
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };

  let temporal: TemporalDevServer | undefined;
  let minio: MinioServer | undefined;
  const started = await Promise.allSettled([
    startTemporalDevServer({ logDir: workDir }).then((server) => (temporal = server)),
    startMinio({ dataDir: join(workDir, 'minio'), logDir: workDir }).then((server) => (minio = server)),
  ]);
  try {
    for (const [index, result] of started.entries()) {
      if (result.status === 'fulfilled') continue;
      const what = index === 0 ? 'Temporal dev server' : 'MinIO';
      if (isCI) throw new Error(`CI=true and the ${what} could not start: ${result.reason}`);
      console.error(`\n!!! ${what} unavailable — its tests will be SKIPPED: ${result.reason}\n`);
      env[index === 0 ? serviceEnv.temporalUnavailable : serviceEnv.s3Unavailable] = String(result.reason);
    }
    if (temporal) {
      env[serviceEnv.temporalAddress] = temporal.address;
      console.error(`temporal dev server at ${temporal.address} (pid ${temporal.pid})`);
    }
    if (minio) {
      env[serviceEnv.s3Endpoint] = minio.endpoint;
      env[serviceEnv.s3AccessKeyId] = minio.accessKeyId;
      env[serviceEnv.s3SecretAccessKey] = minio.secretAccessKey;
      console.error(`minio at ${minio.endpoint} (pid ${minio.pid})`);
    }
    const runner = spawn(
      process.execPath,
      ['--import', 'tsx', '--test', '--test-reporter=spec', ...runnerFlags, ...files],
      { cwd: root, env, stdio: 'inherit' },
    );
    return await new Promise<number>((resolve) =>
      runner.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))),
    );
  } finally {
    await Promise.all([temporal?.stop(), minio?.stop()]);
    rmSync(workDir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
