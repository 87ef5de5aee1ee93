// What every `dpoflow` command is, the error and exit codes they share, and option parsing.

import { parseArgs } from 'node:util';

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
