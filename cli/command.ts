// What every `dpoflow` command is, the error and exit codes they share, option parsing, the Temporal
// connection flags and the training progress bar.

import { parseArgs } from 'node:util';
import { type TemporalConfig, temporalSchema } from '../config/schema.ts';

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

/** Bad usage or invalid input: the user must change something. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const exitCodes = { ok: 0, failure: 1, usage: 2 } as const;

/** `--name value` options, all strings (commands check and convert them); a parse error is a UsageError. */
export function stringOptions(args: string[], names: readonly string[]): Record<string, string | undefined> {
  try {
    const { values } = parseArgs({
      args,
      options: Object.fromEntries(names.map((name) => [name, { type: 'string' as const }])),
    });
    return values as Record<string, string | undefined>;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export const connectionHelp = `  --address HOST:PORT  Temporal frontend (default TEMPORAL_ADDRESS or localhost:7233)
  --namespace NAME     Temporal namespace (default TEMPORAL_NAMESPACE or default)`;

/** The Temporal connection: --address / --namespace over `base` (default: the environment, then defaults). */
export function temporalSettings(
  values: Record<string, string | undefined>,
  base: TemporalConfig = temporalSchema.parse({
    address: process.env.TEMPORAL_ADDRESS,
    namespace: process.env.TEMPORAL_NAMESPACE,
  }),
): TemporalConfig {
  return { ...base, address: values.address ?? base.address, namespace: values.namespace ?? base.namespace };
}

/** `[#####.....] step 12/200 loss 0.6931 acc 0.50`; accuracy only when the task reports one. */
export function trainingBar({
  step,
  totalSteps,
  loss,
  accuracy,
}: Record<string, number | undefined>): string {
  const width = 30;
  const filled = Math.round((width * step!) / totalSteps!);
  const acc = typeof accuracy === 'number' ? ` acc ${accuracy.toFixed(2)}` : '';
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${step}/${totalSteps} loss ${loss!.toFixed(4)}${acc}`;
}
