// Supervised fine-tuning on the shared loop: the mean negative log-likelihood of completion tokens given their
// prompt (prompt and padding masked). What the paper does first, to obtain π_ref from a base model. Rows are
// {prompt, completion}, {text} (no prompt), or TRL preference rows whose chosen side is used.

import { z } from 'zod';
import type { TrainingConfig } from '../config/schema.ts';
import type { HostTensor } from '../engine/dtype.ts';
import { causalLmLogits, rightPaddedFeeds, sequenceLogProbs } from '../engine/models/causal-lm.ts';
import type { CausalLmSpec } from '../engine/models/hf-config.ts';
import * as op from '../engine/ops/index.ts';
import { parsePreferenceRow, RowError } from '../text/preference-rows.ts';
import { tokenizePair } from '../text/preference-tokenizer.ts';
import type { TextTokenizer } from '../text/tokenizer.ts';
import type { RawRows } from './dataset.ts';
import { DatasetError } from './dataset.ts';
import { type TrainingResult, type TrainingSetup, type TrainingTask, trainWith } from './loop.ts';

export interface SftExample {
  prompt_input_ids: readonly number[];
  completion_input_ids: readonly number[];
}

/** A supervised row: a completion after an optional prompt, or a whole text. */
export const completionRowSchema = z.union([
  z.looseObject({ prompt: z.string().optional(), completion: z.string() }),
  z.looseObject({ text: z.string().min(1) }),
]);

export function sftTask(spec: CausalLmSpec, padTokenId: number): TrainingTask<SftExample> {
  return {
    lossProgram: (graph, policy) => {
      const feed = (name: string) => graph.input(name, 'int64', ['batch', 'seq']);
      const inputIds = feed('input_ids');
      const logits = causalLmLogits(spec, inputIds, policy.weight, feed('attention_mask'));
      const scored = sequenceLogProbs(logits, inputIds, feed('response_mask'));
      // Mean over every completion token of the micro-batch, as transformers' causal-LM loss.
      const loss = op.div(op.neg(op.reduceSum(scored.logp)), op.reduceSum(scored.nTokens));
      return { loss, trainable: policy.trainable };
    },
    collate: (examples): Record<string, HostTensor> =>
      rightPaddedFeeds(
        examples.map((example) => [example.prompt_input_ids, example.completion_input_ids]),
        padTokenId,
      ),
    length: (example) => example.prompt_input_ids.length + example.completion_input_ids.length,
  };
}

export async function trainSft(
  setup: TrainingSetup<SftExample> & { padTokenId: number },
): Promise<TrainingResult> {
  return trainWith(sftTask(setup.spec, setup.padTokenId), setup);
}

/**
 * Tokenized examples: BOS (when the tokenizer adds one) + prompt, then completion + EOS; a prompt longer than
 * max_prompt_length keeps its end, and an example still longer than max_length is skipped. Preference rows
 * go through the DPO tokenization and keep their chosen side. More than `maxInvalidRows` invalid rows, or no
 * example, is a DatasetError naming the file and rows.
 */
export function prepareSftExamples(
  raw: RawRows,
  tokenizer: TextTokenizer,
  settings: Pick<TrainingConfig, 'max_length' | 'max_prompt_length' | 'truncation_mode'> & {
    maxInvalidRows: number;
  },
): { examples: SftExample[]; invalid: string[]; skipped: number } {
  const examples: SftExample[] = [];
  const invalid: string[] = [];
  let skipped = 0;
  for (const { line, value, syntaxError } of raw.rows) {
    let example: SftExample | undefined;
    try {
      if (syntaxError) throw new RowError(line, '', syntaxError);
      example = completionRowSchema.safeParse(value).success
        ? textExample(value as { prompt?: string; completion?: string; text?: string }, tokenizer, settings)
        : chosenExample(tokenizePair(tokenizer, parsePreferenceRow(value, line), line, settings));
    } catch (error) {
      if (!(error instanceof RowError)) throw error;
      invalid.push(
        `${error.message.replace(/^row/, 'line')} (expected {prompt, completion}, {text} or a preference row)`,
      );
      continue;
    }
    if (example) examples.push(example);
    else skipped++;
  }
  if (invalid.length > settings.maxInvalidRows) {
    throw new DatasetError(
      `${raw.source}: ${invalid.length} invalid row(s) (dataset.max_invalid_rows is ${settings.maxInvalidRows}):\n  ${invalid.slice(0, 10).join('\n  ')}`,
    );
  }
  if (examples.length === 0) {
    throw new DatasetError(
      `${raw.source}: no usable examples in ${raw.rows.length} row(s) (${skipped} too long)`,
    );
  }
  return { examples, invalid, skipped };
}

function textExample(
  row: { prompt?: string; completion?: string; text?: string },
  tokenizer: TextTokenizer,
  settings: Pick<TrainingConfig, 'max_length' | 'max_prompt_length' | 'truncation_mode'>,
): SftExample | undefined {
  const bos = tokenizer.addsBos && tokenizer.bosTokenId !== undefined ? [tokenizer.bosTokenId] : [];
  let prompt = tokenizer.encode(row.prompt ?? '', { addSpecialTokens: false });
  const eos = tokenizer.eosTokenId === undefined ? [] : [tokenizer.eosTokenId];
  const completion = [
    ...tokenizer.encode(row.completion ?? row.text ?? '', { addSpecialTokens: false }),
    ...eos,
  ];
  const room = settings.max_prompt_length - bos.length;
  if (prompt.length > room) {
    prompt =
      settings.truncation_mode === 'keep_end' ? prompt.slice(prompt.length - room) : prompt.slice(0, room);
  }
  const promptIds = [...bos, ...prompt];
  if (promptIds.length === 0 || promptIds.length + completion.length > settings.max_length) return undefined;
  return { prompt_input_ids: promptIds, completion_input_ids: completion };
}

function chosenExample(pair: ReturnType<typeof tokenizePair>): SftExample | undefined {
  if (pair.kind === 'dropped') return undefined;
  return { prompt_input_ids: pair.prompt_input_ids, completion_input_ids: pair.chosen_input_ids };
}
