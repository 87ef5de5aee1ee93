// What a DPO run records: the trainer state (TRL's trainer_state.json plus what exact resume needs), the log
// entries, and a checkpoint = that state + trainable weights + optimizer state. Zod-checked on the way in.

import { z } from 'zod';
import type { ParameterSet } from '../engine/parameters.ts';

export const TRAINER_STATE_VERSION = 1;

/** One metrics.jsonl line: step, epoch and metrics under TRL's names (eval_* for evaluation). */
export type LogEntry = Record<string, number>;

/** Sums of micro-batch metrics since the last log, so a resumed run logs exactly what an uninterrupted one does. */
export const metricWindowSchema = z.object({
  count: z.int().gte(0),
  sums: z.record(z.string(), z.number()),
  grad_norm: z.number().optional(),
  learning_rate: z.number().optional(),
});
export type MetricWindow = z.infer<typeof metricWindowSchema>;

export const trainerStateSchema = z.object({
  version: z.literal(TRAINER_STATE_VERSION),
  global_step: z.int().gte(0),
  /** Micro-batches consumed: the data position (epoch = ⌊·/per epoch⌋; the epoch's order comes from seed, epoch). */
  micro_batches: z.int().gte(0),
  epoch: z.number().gte(0),
  max_steps: z.int().gte(1),
  seed: z.int().gte(0),
  config_digest: z.string(),
  log_history: z.array(z.record(z.string(), z.number())),
  window: metricWindowSchema,
});
export type TrainerState = z.infer<typeof trainerStateSchema>;

export interface TrainerCheckpoint {
  state: TrainerState;
  /** Trainable tensors: every weight, or the LoRA adapters. */
  parameters: ParameterSet;
  /** `<parameter>.<suffix>`, e.g. `transformer.wte.weight.exp_avg`. */
  optimizerState: ParameterSet;
}
