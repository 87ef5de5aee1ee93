// How failures are named: the error types that retrying cannot fix (bad data, config or settings), which
// activities report as non-retryable and workflows list in their retry policies, and the message that says
// why a run failed. No imports, so the workflow bundle can include it.

export const NON_RETRYABLE_TYPES = [
  'ConfigError',
  'DatasetError',
  'TrainingSetupError',
  'TrainingDivergedError',
  'LoraError',
  'CheckpointError',
  'ModelConfigError',
  'TinyModelError',
  'SafetensorsError',
  'TokenizerError',
  'ChatTemplateError',
] as const;

/** The innermost cause's message: what the activity said, not Temporal's wrapper ("Activity task failed"). */
export function rootMessage(error: unknown): string {
  let cause = error as Error;
  while (cause.cause instanceof Error) cause = cause.cause;
  return cause.message;
}
