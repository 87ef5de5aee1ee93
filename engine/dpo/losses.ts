// DPO-family preference losses as graph functions of per-sequence log-probs (../shared DPO-REFERENCE, Losses),
// built from primitives so autodiff needs no rules of its own. Stable forms only: log σ(z) = −softplus(−z).
// Inputs are (P,) per pair; outputs are per-pair losses (P,) to be averaged by the caller, and the rewards.

import * as F from '../functional.ts';
import type { Tensor } from '../graph.ts';
import * as op from '../ops/index.ts';

export type PreferenceLossType = 'sigmoid' | 'robust' | 'hinge' | 'ipo' | 'simpo';

export interface PairLogProbs {
  policyChosen: Tensor; // Σ log π(y_w|x) over response tokens, (P,)
  policyRejected: Tensor; // (P,)
  /** Reference log-probs; unused by simpo (reference-free). */
  referenceChosen?: Tensor;
  referenceRejected?: Tensor;
  /** Response token counts, (P,): ipo and simpo average per token. */
  chosenTokens: Tensor;
  rejectedTokens: Tensor;
}

export interface LossSettings {
  beta: number; // > 0
  /** ε: sigmoid applies cDPO smoothing (TRL v0); robust is unbiased under label-flip rate ε. */
  labelSmoothing?: number;
  simpoGamma?: number; // γ, simpo's target reward margin
}

export interface PreferenceLoss {
  losses: Tensor; // (P,)
  chosenRewards: Tensor; // β·(log π − log π_ref) of chosen, (P,); simpo: β·mean-token log π
  rejectedRewards: Tensor; // (P,)
}

export function preferenceLoss(
  type: PreferenceLossType,
  pairs: PairLogProbs,
  settings: LossSettings,
): PreferenceLoss {
  const { beta } = settings;
  const epsilon = settings.labelSmoothing ?? 0;
  if (!(beta > 0)) throw new RangeError(`beta must be > 0, got ${beta}`);
  if (type === 'simpo') {
    const chosen = op.div(pairs.policyChosen, pairs.chosenTokens);
    const rejected = op.div(pairs.policyRejected, pairs.rejectedTokens);
    const margin = op.sub(op.mul(op.sub(chosen, rejected), beta), settings.simpoGamma ?? 0);
    return {
      losses: op.neg(F.logSigmoid(margin)),
      chosenRewards: op.mul(chosen, beta),
      rejectedRewards: op.mul(rejected, beta),
    };
  }
  if (!pairs.referenceChosen || !pairs.referenceRejected)
    throw new RangeError(`loss_type ${type} needs reference log-probs`);
  const chosenRatio = op.sub(pairs.policyChosen, pairs.referenceChosen); // r_w
  const rejectedRatio = op.sub(pairs.policyRejected, pairs.referenceRejected); // r_l
  const rewards = { chosenRewards: op.mul(chosenRatio, beta), rejectedRewards: op.mul(rejectedRatio, beta) };
  const h = op.sub(chosenRatio, rejectedRatio);
  const scaled = op.mul(h, beta); // βh
  switch (type) {
    case 'sigmoid': {
      // −(1−ε) log σ(βh) − ε log σ(−βh); ε = 0 is the paper's loss.
      const loss = op.neg(F.logSigmoid(scaled));
      if (epsilon === 0) return { losses: loss, ...rewards };
      return {
        losses: op.sub(op.mul(loss, 1 - epsilon), op.mul(F.logSigmoid(op.neg(scaled)), epsilon)),
        ...rewards,
      };
    }
    case 'robust': {
      if (!(epsilon < 0.5)) throw new RangeError(`robust loss needs label_smoothing < 0.5, got ${epsilon}`);
      const numerator = op.add(
        op.mul(F.logSigmoid(scaled), -(1 - epsilon)),
        op.mul(F.logSigmoid(op.neg(scaled)), epsilon),
      );
      return { losses: op.div(numerator, 1 - 2 * epsilon), ...rewards };
    }
    case 'hinge':
      return { losses: op.relu(op.sub(1, scaled)), ...rewards };
    case 'ipo': {
      // TRL's choice: log-ratios averaged per token before the margin (the reference repo summed them).
      const perToken = op.sub(
        op.div(chosenRatio, pairs.chosenTokens),
        op.div(rejectedRatio, pairs.rejectedTokens),
      );
      const gap = op.sub(perToken, 1 / (2 * beta));
      return { losses: op.mul(gap, gap), ...rewards };
    }
  }
}

/** α · mean NLL of the chosen responses' tokens (RPO); add it to the mean preference loss when α > 0. */
export function chosenNll(pairs: PairLogProbs, alpha: number): Tensor {
  return op.mul(op.div(op.neg(op.reduceSum(pairs.policyChosen)), op.reduceSum(pairs.chosenTokens)), alpha);
}
