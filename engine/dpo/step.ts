// The DPO training step as a loss program: chosen and rejected sequences go through the policy in ONE
// concatenated forward, reference log-probs come in as inputs (precomputed once, so no reference model is in
// the session), and the outputs carry TRL's metric names. compileTraining adds backward + clipping + AdamW.
// Legend: P pairs, T tokens (chosen and rejected padded to the same T).

import type { DType } from '../dtype.ts';
import type { Graph, Tensor } from '../graph.ts';
import { causalLmLogits, sequenceLogProbs, type WeightSource } from '../models/causal-lm.ts';
import type { CausalLmSpec } from '../models/hf-config.ts';
import * as op from '../ops/index.ts';
import type { LossProgram } from '../train-step.ts';
import { chosenNll, type PreferenceLossType, preferenceLoss } from './losses.ts';

export interface DpoLossSettings {
  lossType: PreferenceLossType;
  beta: number;
  labelSmoothing?: number;
  simpoGamma?: number;
  /** α of the NLL term on chosen responses (RPO); undefined or 0 = none. */
  rpoAlpha?: number;
}

/** Feed names of one batch of pairs (TRL's batch keys); each side is (P, T), the references (P,). */
export const dpoFeeds = {
  sides: ['chosen', 'rejected'] as const,
  inputIds: (side: 'chosen' | 'rejected') => `${side}_input_ids`,
  attentionMask: (side: 'chosen' | 'rejected') => `${side}_attention_mask`,
  responseMask: (side: 'chosen' | 'rejected') => `${side}_response_mask`,
  reference: (side: 'chosen' | 'rejected') => `ref_${side}_logps`,
};

/** TRL's metric names, each a batch mean (logits/* token-weighted), in the order they are logged. */
export const DPO_METRICS = [
  'rewards/chosen',
  'rewards/rejected',
  'rewards/accuracies',
  'rewards/margins',
  'logps/chosen',
  'logps/rejected',
  'logits/chosen',
  'logits/rejected',
] as const;

export function dpoUsesReference(lossType: PreferenceLossType): boolean {
  return lossType !== 'simpo';
}

/**
 * Builds the step on `graph`: `weight` supplies the policy's weights (trainable ones as graph inputs), `trainable`
 * lists those inputs. Pairs whose reference log-probs are needed must be fed with ref_{side}_logps.
 */
export function dpoLossProgram(
  graph: Graph,
  spec: CausalLmSpec,
  policy: { weight: WeightSource; trainable: Tensor[] },
  settings: DpoLossSettings,
  dtype: DType,
): LossProgram {
  const side = (name: 'chosen' | 'rejected') => ({
    inputIds: graph.input(dpoFeeds.inputIds(name), 'int64', ['pairs', 'seq']),
    attentionMask: graph.input(dpoFeeds.attentionMask(name), 'int64', ['pairs', 'seq']),
    responseMask: graph.input(dpoFeeds.responseMask(name), 'int64', ['pairs', 'seq']),
  });
  const chosen = side('chosen');
  const rejected = side('rejected');
  const both = (key: keyof typeof chosen) => op.concat([chosen[key], rejected[key]], 0); // (2P, T)
  const inputIds = both('inputIds');
  const logits = causalLmLogits(spec, inputIds, policy.weight, both('attentionMask'));
  const scored = sequenceLogProbs(logits, inputIds, both('responseMask'));
  const [policyChosen, policyRejected] = op.split(scored.logp, 2, 0);
  const [chosenTokens, rejectedTokens] = op.split(scored.nTokens, 2, 0);
  const [chosenMeanLogit, rejectedMeanLogit] = op.split(scored.meanLogit, 2, 0);
  const pairs = {
    policyChosen,
    policyRejected,
    chosenTokens,
    rejectedTokens,
    ...(dpoUsesReference(settings.lossType)
      ? {
          referenceChosen: graph.input(dpoFeeds.reference('chosen'), dtype, ['pairs']),
          referenceRejected: graph.input(dpoFeeds.reference('rejected'), dtype, ['pairs']),
        }
      : {}),
  };
  const { losses, chosenRewards, rejectedRewards } = preferenceLoss(settings.lossType, pairs, settings);
  let loss = op.reduceMean(losses, [0], false);
  const metrics: Record<string, Tensor> = {};
  if (settings.rpoAlpha) {
    const nll = chosenNll(pairs, settings.rpoAlpha);
    metrics.nll_loss = nll;
    loss = op.add(loss, nll);
  }
  const mean = (x: Tensor) => op.reduceMean(x, [0], false);
  const tokenWeighted = (meanLogit: Tensor, tokens: Tensor) =>
    op.div(op.reduceSum(op.mul(meanLogit, tokens), [0], false), op.reduceSum(tokens, [0], false));
  Object.assign(metrics, {
    'rewards/chosen': mean(chosenRewards),
    'rewards/rejected': mean(rejectedRewards),
    'rewards/accuracies': mean(op.cast(op.greater(chosenRewards, rejectedRewards), dtype)),
    'rewards/margins': mean(op.sub(chosenRewards, rejectedRewards)),
    'logps/chosen': mean(policyChosen),
    'logps/rejected': mean(policyRejected),
    'logits/chosen': tokenWeighted(chosenMeanLogit, chosenTokens),
    'logits/rejected': tokenWeighted(rejectedMeanLogit, rejectedTokens),
  });
  return { loss, metrics, trainable: policy.trainable };
}
