// Finds the Temporal CLI and MinIO binaries: env var, then PATH, then the cache that install-binaries.sh
// fills with pinned `go install` builds (building them there the first time, when Go is installed).

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ServiceBinaries {
  temporal: string;
  minio: string;
}

const installScript = fileURLToPath(new URL('./install-binaries.sh', import.meta.url));

let resolved: Promise<ServiceBinaries> | undefined;

export function resolveBinaries(): Promise<ServiceBinaries> {
  resolved ??= (async () => {
    // The script's stderr goes straight through: a first-time Go build says so and takes minutes.
    const child = execFile('bash', [installScript], { maxBuffer: 1 << 20, timeout: 60 * 60 * 1000 });
    child.stderr?.pipe(process.stderr);
    const stdout = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (chunk) => {
        out += chunk;
      });
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0
          ? resolve(out)
          : reject(
              new Error(
                `cannot find or build the Temporal CLI and MinIO (install-binaries.sh exited ${code})`,
              ),
            ),
      );
    });
    const found = Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((line) => line.split('=', 2) as [string, string]),
    );
    return { temporal: found.TEMPORAL_CLI_PATH, minio: found.MINIO_BIN };
  })();
  return resolved;
}
