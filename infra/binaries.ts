// Finds the Temporal CLI and MinIO binaries: env var, then PATH, then the cache that install-binaries.sh
// fills with pinned `go install` builds (building them there the first time, when Go is installed).

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export interface ServiceBinaries {
  temporal: string;
  minio: string;
}

const installScript = fileURLToPath(new URL('./install-binaries.sh', import.meta.url));

let resolved: Promise<ServiceBinaries> | undefined;

export function resolveBinaries(): Promise<ServiceBinaries> {
  resolved ??= (async () => {
    const { stdout } = await promisify(execFile)('bash', [installScript], {
      maxBuffer: 1 << 20,
      timeout: 60 * 60 * 1000,
    }).catch((error: { stderr?: string; message: string }) => {
      throw new Error(`cannot find or build the Temporal CLI and MinIO:\n${error.stderr ?? error.message}`);
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
