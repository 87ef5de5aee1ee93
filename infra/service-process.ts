// Child processes for local services (Temporal dev server, MinIO): start, wait until ready, stop for sure.
// Services bind to loopback only; their output goes to a log file that start errors quote.

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ServiceProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  stop(): Promise<void>;
}

export interface ServiceSpec {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  logFile: string;
  /** Resolves true once the service answers; called repeatedly until it does. */
  isReady: () => Promise<boolean>;
  readyTimeoutMs?: number;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kills every service this process started when it exits, so a crashed test run leaves nothing behind. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      // A host with its own handler (dpoflow dev) shuts down gracefully and stops its services itself.
      if (process.listenerCount(signal) > 1) return;
      for (const child of running) child.kill('SIGKILL');
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    });
  }
}

export async function startService(spec: ServiceSpec): Promise<ServiceProcess> {
  installExitHook();
  const log = createWriteStream(spec.logFile, { flags: 'a' });
  const child = spawn(spec.command, spec.args, {
    env: spec.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  running.add(child);
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `exited with ${signal ?? `code ${code}`}`;
    running.delete(child);
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const deadline = Date.now() + (spec.readyTimeoutMs ?? 60_000);
  for (;;) {
    const failure = await Promise.race([spawnError, sleep(200).then(() => undefined)]);
    if (failure) throw new Error(`${spec.name}: cannot start ${spec.command}: ${failure.message}`);
    if (exited)
      throw new Error(
        `${spec.name} ${exited} before it was ready; log ${spec.logFile}:\n${tail(spec.logFile)}`,
      );
    if (await spec.isReady().catch(() => false)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `${spec.name} not ready after ${spec.readyTimeoutMs ?? 60_000} ms; log ${spec.logFile}:\n${tail(spec.logFile)}`,
      );
    }
  }

  return {
    name: spec.name,
    pid: child.pid!,
    logFile: spec.logFile,
    async stop() {
      if (exited) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const stoppedInTime = await Promise.race([gone.then(() => true), sleep(10_000).then(() => false)]);
      if (!stoppedInTime) {
        child.kill('SIGKILL');
        await gone;
      }
      log.end();
    },
  };
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}
