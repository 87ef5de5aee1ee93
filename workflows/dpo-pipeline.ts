// `dpoPipeline(config)`: data preparation → reference log-prob cache → DPO training and evaluation on the GPU
// queue.
// Deterministic orchestration only: each stage is an activity whose output is content-addressed, so a stage
// whose result exists returns it at once (a rerun, or a new β that keeps the data and reference caches).

import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  proxyActivities,
  type RetryPolicy,
  setCurrentDetails,
  setHandler,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import { NON_RETRYABLE_TYPES, rootMessage } from '../activities/failure-types.ts';
import type {
  Evaluation,
  GeneratedPairs,
  PipelineActivities,
  PreparedData,
  ReferenceLogprobs,
  RunOutcome,
  TrainedPolicy,
} from '../activities/pipeline.ts';
import { ConfigError, issuesFromZod } from '../config/errors.ts';
import { configJsonSchema, configSchema, type DpoflowConfigInput } from '../config/schema.ts';

export type PipelineStage = 'sft' | 'generate' | 'prepare' | 'reference' | 'train' | 'evaluate' | 'done';

export interface PipelineProgress {
  stage: PipelineStage;
  sft?: TrainedPolicy;
  generated?: GeneratedPairs;
  data?: PreparedData;
  reference?: ReferenceLogprobs;
  trained?: TrainedPolicy;
  evaluation?: Evaluation;
}

export interface PipelineResult {
  /** The SFT model, when stages.sft ran: the policy's start and π_ref. */
  sft?: TrainedPolicy;
  /** The generated pairs, when stages.generate_preferences ran: the training data. */
  generated?: GeneratedPairs;
  data: PreparedData;
  reference?: ReferenceLogprobs;
  trained: TrainedPolicy;
  /** Absent when evaluation.enabled is false. */
  evaluation?: Evaluation;
}

export const progressQuery = defineQuery<PipelineProgress>('progress');

/** Transient failures (network, a lost worker) retry with backoff; invalid data or config fail at once. */
const retry: RetryPolicy = {
  initialInterval: '2 seconds',
  backoffCoefficient: 2,
  maximumInterval: '1 minute',
  maximumAttempts: 10,
  nonRetryableErrorTypes: [...NON_RETRYABLE_TYPES],
};

/**
 * Runs the stages for `input`, a config as a file holds it (defaults are filled here; locations should be
 * s3:// or file:// URIs, as `loadConfig` makes them). An invalid config fails the run at once, naming the fields.
 */
export async function dpoPipeline(input: DpoflowConfigInput): Promise<PipelineResult> {
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    const error = new ConfigError(issuesFromZod(parsed.error.issues, input, configJsonSchema()));
    throw ApplicationFailure.nonRetryable(error.message, 'ConfigError');
  }
  let config = parsed.data;
  const progress: PipelineProgress = { stage: 'prepare' };
  setHandler(progressQuery, () => progress);
  const enter = (stage: PipelineStage, details: string) => {
    progress.stage = stage;
    setCurrentDetails(`**${stage}**: ${details}`);
    // Memo, so run listings show what each run trains on and how far it is.
    upsertMemo({ name: config.name, model: config.model.uri, dataset: config.dataset.train, stage });
  };
  const queues = config.temporal.task_queues;
  const cpu = proxyActivities<PipelineActivities>({
    taskQueue: queues.cpu,
    startToCloseTimeout: '6 hours',
    heartbeatTimeout: '5 minutes',
    retry,
  });
  const gpu = proxyActivities<PipelineActivities>({
    taskQueue: queues.gpu,
    // A cancelled run ends once training has stopped and saved its checkpoint, not before.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    startToCloseTimeout: '7 days',
    // A lost worker is noticed within this and training resumes from the newest checkpoint elsewhere.
    heartbeatTimeout: `${config.temporal.training_heartbeat_timeout_s} seconds`,
    retry,
  });

  const stages = async (): Promise<PipelineResult> => {
    // Optional stages of the paper's setup: SFT gives π_ref (and the policy's start); generated pairs the data.
    if (config.stages.sft.enabled) {
      enter('sft', `fine-tuning on ${config.stages.sft.dataset}`);
      const sft = await gpu.superviseFineTune({ config });
      progress.sft = sft;
      const sftModel = sft.modelUri;
      config = { ...config, model: { ...config.model, uri: sftModel, reference: sftModel } };
    }
    if (config.stages.generate_preferences.enabled) {
      enter('generate', `sampling completions for ${config.stages.generate_preferences.prompts}`);
      const generated = await gpu.generatePreferences({ config });
      progress.generated = generated;
      config = { ...config, dataset: { ...config.dataset, train: generated.uri } };
    }
    enter('prepare', `reading ${config.dataset.train}`);
    const data = await cpu.prepareData({ config });
    progress.data = data;
    let reference: ReferenceLogprobs | undefined;
    if (config.training.loss_type !== 'simpo') {
      enter('reference', `π_ref over ${data.counts.train + data.counts.eval} pairs`);
      // Large datasets fan out: groups of shards score in parallel on any CPU workers, then one call publishes.
      const shards = [...data.shards.train, ...data.shards.eval];
      const group = config.temporal.reference_shards_per_activity;
      if (shards.length > group) {
        const groups = Array.from({ length: Math.ceil(shards.length / group) }, (_, i) =>
          shards.slice(i * group, (i + 1) * group),
        );
        await Promise.all(groups.map((part) => cpu.cacheReferenceLogprobs({ config, data, shards: part })));
      }
      reference = await cpu.cacheReferenceLogprobs({ config, data });
      progress.reference = reference;
    }
    enter('train', `${data.counts.train} pairs on ${queues.gpu}`);
    const trained = await gpu.trainPolicy({ config, data, reference });
    progress.trained = trained;
    let evaluation: Evaluation | undefined;
    if (config.evaluation.enabled) {
      enter('evaluate', `${config.evaluation.num_prompts} held-out prompts on ${queues.gpu}`);
      evaluation = await gpu.evaluatePolicy({ config, data, trained });
      progress.evaluation = evaluation;
    }
    enter('done', `model at ${trained.modelUri}`);
    return { sft: progress.sft, generated: progress.generated, data, reference, trained, evaluation };
  };

  // The completion webhook (notify.webhook_url) hears how the run ended, cancellation included.
  const webhook = config.notify.webhook_url;
  const notify = async (outcome: Omit<RunOutcome, 'run_id'>) => {
    if (!webhook) return;
    const runId = workflowInfo().workflowId;
    await CancellationScope.nonCancellable(() =>
      cpu.notifyWebhook({ url: webhook, outcome: { run_id: runId, ...outcome } }),
    );
  };
  try {
    const result = await stages();
    await notify({
      status: 'COMPLETED',
      model_uri: result.trained.modelUri,
      evaluation_uri: result.evaluation?.uri,
      metrics: result.trained.evaluation,
    });
    return result;
  } catch (error) {
    await notify(
      isCancellation(error) ? { status: 'CANCELLED' } : { status: 'FAILED', failure: rootMessage(error) },
    );
    throw error;
  }
}
