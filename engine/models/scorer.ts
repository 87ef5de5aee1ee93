// Scores tokenized preference pairs under one model: per pair, the summed log-prob and token count of the
// chosen and the rejected response. The session is built once; pairs go through in right-padded batches with
// chosen and rejected sequences side by side. Used by `dpoflow score` and the reference log-prob cache.

import type { ParameterSet } from '../parameters.ts';
import { createSession, type RuntimeOptions, type Session } from '../runtime.ts';
import { buildScoringModel, rightPaddedFeeds } from './causal-lm.ts';
import type { CausalLmSpec } from './hf-config.ts';

export interface PairIds {
  prompt_input_ids: readonly number[];
  chosen_input_ids: readonly number[];
  rejected_input_ids: readonly number[];
}

export interface PairScore {
  logp_chosen: number;
  logp_rejected: number;
  n_tokens_chosen: number;
  n_tokens_rejected: number;
  mean_logit_chosen: number;
  mean_logit_rejected: number;
}

export class PairScorer {
  private constructor(
    private readonly session: Session,
    private readonly padTokenId: number,
  ) {}

  static async create(
    spec: CausalLmSpec,
    parameters: ParameterSet,
    runtime: Partial<RuntimeOptions> = {},
  ): Promise<PairScorer> {
    const session = await createSession(buildScoringModel(spec, parameters), runtime);
    return new PairScorer(session, spec.eosTokenIds[0] ?? 0);
  }

  /** Scores up to any number of pairs in one run: rows 0..P−1 chosen, P..2P−1 rejected. */
  async score(pairs: readonly PairIds[]): Promise<PairScore[]> {
    const scored = await this.scoreSequences([
      ...pairs.map((pair) => [pair.prompt_input_ids, pair.chosen_input_ids] as const),
      ...pairs.map((pair) => [pair.prompt_input_ids, pair.rejected_input_ids] as const),
    ]);
    const P = pairs.length;
    return pairs.map((_, i) => ({
      logp_chosen: scored[i].logp,
      logp_rejected: scored[P + i].logp,
      n_tokens_chosen: scored[i].nTokens,
      n_tokens_rejected: scored[P + i].nTokens,
      mean_logit_chosen: scored[i].meanLogit,
      mean_logit_rejected: scored[P + i].meanLogit,
    }));
  }

  /** Summed response log-prob, token count and mean logit of each (prompt, response), in one run. */
  async scoreSequences(
    sequences: readonly (readonly [prompt: readonly number[], response: readonly number[]])[],
  ): Promise<{ logp: number; nTokens: number; meanLogit: number }[]> {
    const out = await this.session.run(rightPaddedFeeds(sequences, this.padTokenId));
    const [logp, count, meanLogit] = [
      out.logp.data,
      out.n_tokens.data,
      out.mean_logit.data,
    ] as Float32Array[];
    return sequences.map((_, i) => ({ logp: logp[i], nTokens: count[i], meanLogit: meanLogit[i] }));
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
