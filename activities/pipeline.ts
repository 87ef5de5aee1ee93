// The pipeline's activities for Temporal workers: each stage function wrapped with the activity's heartbeat
// and cancellation, its failures sorted into retryable or not. Built by a factory that receives the worker's
// settings (S3 credentials, onnxruntime overrides); the store and the rest come with each run's config.

import { Context } from '@temporalio/activity';
import type { DpoflowConfig } from '../config/schema.ts';
import { type Evaluation, evaluatePolicy } from './evaluate.ts';
import { sortingFailures } from './failures.ts';
import { type GeneratedPairs, generatePreferences } from './generate-preferences.ts';
import { notifyWebhook, type RunOutcome } from './notify.ts';
import { type PreparedData, prepareData } from './prepare-data.ts';
import { cacheReferenceLogprobs, type ReferenceLogprobs } from './reference-logprobs.ts';
import { superviseFineTune } from './sft.ts';
import { type StageContext, stageContext, type WorkerSettings } from './stage.ts';
import { type TrainedPolicy, trainPolicy } from './train-policy.ts';

export type { Evaluation, GeneratedPairs, PreparedData, ReferenceLogprobs, RunOutcome, TrainedPolicy };

export interface PipelineActivities {
  prepareData(input: { config: DpoflowConfig }): Promise<PreparedData>;
  /** With `shards`: one group of a fan-out, scored but not published. */
  cacheReferenceLogprobs(input: {
    config: DpoflowConfig;
    data: PreparedData;
    shards?: string[];
  }): Promise<ReferenceLogprobs>;
  trainPolicy(input: {
    config: DpoflowConfig;
    data: PreparedData;
    reference?: ReferenceLogprobs;
  }): Promise<TrainedPolicy>;
  evaluatePolicy(input: {
    config: DpoflowConfig;
    data: PreparedData;
    trained: TrainedPolicy;
  }): Promise<Evaluation>;
  superviseFineTune(input: { config: DpoflowConfig }): Promise<TrainedPolicy>;
  generatePreferences(input: { config: DpoflowConfig }): Promise<GeneratedPairs>;
  notifyWebhook(input: { url: string; outcome: RunOutcome }): Promise<void>;
}

export function createPipelineActivities(worker: WorkerSettings = {}): PipelineActivities {
  /** Runs a stage with the activity's heartbeat and cancellation; a cancelled stage ends as cancelled. */
  const run = <T>(config: DpoflowConfig, stage: (context: StageContext) => Promise<T>) => {
    const activity = Context.current();
    const signal = activity.cancellationSignal;
    return sortingFailures(async () => {
      try {
        return await stage(
          stageContext(config, worker, { heartbeat: (details) => activity.heartbeat(details), signal }),
        );
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        throw error;
      }
    });
  };
  return {
    prepareData: ({ config }) => run(config, (context) => prepareData(config, context)),
    cacheReferenceLogprobs: ({ config, data, shards }) =>
      run(config, (context) => cacheReferenceLogprobs(config, data, context, { shards })),
    trainPolicy: ({ config, data, reference }) =>
      run(config, (context) => trainPolicy(config, { data, reference }, context)),
    evaluatePolicy: ({ config, data, trained }) =>
      run(config, (context) => evaluatePolicy(config, { data, trained }, context)),
    superviseFineTune: ({ config }) => run(config, (context) => superviseFineTune(config, context)),
    generatePreferences: ({ config }) => run(config, (context) => generatePreferences(config, context)),
    notifyWebhook: ({ url, outcome }) =>
      notifyWebhook(url, outcome, worker.webhookSecret ?? process.env.DPOFLOW_WEBHOOK_SECRET),
  };
}
