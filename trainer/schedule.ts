// Learning-rate schedules with the Hugging Face Trainer's semantics: the update at 0-based step s uses
// peak · λ(s); warmup rises linearly from 0 over `warmup` steps, then constant, linear decay to 0 at `total`,
// or a half cosine to 0 at `total`.

import type { TrainingConfig } from '../config/schema.ts';

export type ScheduleType = TrainingConfig['lr_scheduler_type'];

export interface Schedule {
  type: ScheduleType;
  peak: number;
  warmup: number;
  total: number;
}

/** warmup_steps, or ceil(warmup_ratio · total) as the HF Trainer computes it. */
export function warmupSteps(
  training: Pick<TrainingConfig, 'warmup_steps' | 'warmup_ratio'>,
  total: number,
): number {
  return training.warmup_steps > 0 ? training.warmup_steps : Math.ceil(training.warmup_ratio * total);
}

export function learningRateAt({ type, peak, warmup, total }: Schedule, step: number): number {
  if (type === 'constant') return peak;
  if (step < warmup) return (peak * step) / Math.max(1, warmup);
  if (type === 'constant_with_warmup') return peak;
  const progress = (step - warmup) / Math.max(1, total - warmup);
  if (type === 'linear') return peak * Math.max(0, 1 - progress);
  return peak * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
