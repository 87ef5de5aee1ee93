// What every `dpoflow` command is, and the error and exit codes they share.

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
