// `sweep({config, grid, metric})`: one child dpoPipeline per point of a hyperparameter grid (e.g. β × learning
// rate), at most `maxConcurrent` at a time, with deterministic child IDs (<sweep id>/trial-<n>), then the best
// trial by a held-out metric. Trials share whatever their configs share: the data and reference caches are
// prepared once.

import { ApplicationFailure, executeChild, workflowInfo } from '@temporalio/workflow';
import type { DpoflowConfigInput } from '../config/schema.ts';
import type { dpoPipeline, PipelineResult } from './dpo-pipeline.ts';

export interface SweepInput {
  config: DpoflowConfigInput;
  /** Dotted setting path → values, e.g. {"training.beta": [0.05, 0.1, 0.5]}; the grid is their product. */
  grid: Record<string, unknown[]>;
  /** A key of the final held-out metrics, e.g. "eval_rewards/accuracies" or "eval_loss". */
  metric: string;
  mode?: 'max' | 'min';
  maxConcurrent?: number;
}

export interface SweepTrial {
  workflowId: string;
  settings: Record<string, unknown>;
  value: number | undefined;
  result: PipelineResult;
}

export interface SweepResult {
  trials: SweepTrial[];
  best: SweepTrial;
}

export async function sweep(input: SweepInput): Promise<SweepResult> {
  const points = gridPoints(input.grid);
  if (points.length === 0) throw ApplicationFailure.nonRetryable('sweep grid has no points', 'ConfigError');
  const window = Math.max(1, input.maxConcurrent ?? 2);
  const trials: SweepTrial[] = new Array(points.length);
  let next = 0;
  const runNext = async (): Promise<void> => {
    while (next < points.length) {
      const index = next++;
      const settings = points[index];
      const workflowId = `${workflowInfo().workflowId}/trial-${index}`;
      const result = await executeChild<typeof dpoPipeline>('dpoPipeline', {
        workflowId,
        args: [withSettings(input.config, settings)],
      });
      const metrics = result.evaluation?.metrics.preference ?? result.trained.evaluation ?? {};
      trials[index] = { workflowId, settings, value: metrics[input.metric], result };
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, points.length) }, runNext));
  const scored = trials.filter((trial) => trial.value !== undefined);
  if (scored.length === 0) {
    throw ApplicationFailure.nonRetryable(
      `no trial reported ${input.metric} (held-out pairs are needed: dataset.eval or eval_fraction > 0)`,
      'ConfigError',
    );
  }
  const sign = input.mode === 'min' ? -1 : 1;
  const best = scored.reduce((a, b) => (sign * b.value! > sign * a.value! ? b : a));
  return { trials, best };
}

/** The grid's points in a fixed order: the first key varies slowest. */
export function gridPoints(grid: Record<string, unknown[]>): Record<string, unknown>[] {
  return Object.entries(grid)
    .reduce<Record<string, unknown>[]>(
      (points, [path, values]) =>
        points.flatMap((point) => values.map((value) => ({ ...point, [path]: value }))),
      [{}],
    )
    .filter((point) => Object.keys(point).length > 0);
}

function withSettings(config: DpoflowConfigInput, settings: Record<string, unknown>): DpoflowConfigInput {
  const copy = JSON.parse(JSON.stringify(config)) as Record<string, unknown>; // no structuredClone in the workflow sandbox
  for (const [path, value] of Object.entries(settings)) {
    const keys = path.split('.');
    let node = copy;
    for (const key of keys.slice(0, -1)) {
      node[key] ??= {};
      node = node[key] as Record<string, unknown>;
    }
    node[keys.at(-1)!] = value;
  }
  return copy as DpoflowConfigInput;
}
