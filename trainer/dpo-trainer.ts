// DPO on the shared loop (TRL's DPOTrainer semantics): the step of engine/dpo/step.ts over pairs whose
// reference log-probs were computed before training.

import type { TrainingConfig } from '../config/schema.ts';
import { dpoLossProgram, dpoUsesReference } from '../engine/dpo/step.ts';
import { collatePairs, pairLength, type TrainingPair } from './batches.ts';
import {
  type TrainingResult,
  type TrainingSetup,
  TrainingSetupError,
  type TrainingTask,
  trainWith,
} from './loop.ts';

export interface DpoTrainingSetup extends TrainingSetup<TrainingPair> {
  padTokenId: number;
}

export function dpoTask(
  spec: TrainingSetup<TrainingPair>['spec'],
  training: TrainingConfig,
  padTokenId: number,
): TrainingTask<TrainingPair> {
  const withReference = dpoUsesReference(training.loss_type);
  return {
    lossProgram: (graph, policy, dtype) =>
      dpoLossProgram(
        graph,
        spec,
        policy,
        {
          lossType: training.loss_type,
          beta: training.beta,
          labelSmoothing: training.label_smoothing,
          simpoGamma: training.simpo_gamma,
          rpoAlpha: training.rpo_alpha,
        },
        dtype,
      ),
    collate: (pairs, dtype) => collatePairs(pairs, { padTokenId, dtype, withReference }),
    length: pairLength,
    progressMetric: 'rewards/accuracies',
  };
}

export async function trainDpo(setup: DpoTrainingSetup): Promise<TrainingResult> {
  if (dpoUsesReference(setup.training.loss_type)) {
    const missing = setup.train.findIndex(
      (p) => p.ref_chosen_logps === undefined || p.ref_rejected_logps === undefined,
    );
    if (missing >= 0) throw new TrainingSetupError(`training pair ${missing} has no reference log-probs`);
  }
  return trainWith(dpoTask(setup.spec, setup.training, setup.padTokenId), setup);
}
