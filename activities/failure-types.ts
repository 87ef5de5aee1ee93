// Error types that retrying cannot fix (bad data, config or settings): activities report them as
// non-retryable ApplicationFailures and workflows list them in their retry policies. No imports, so the
// workflow bundle can include it.

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
