// Turns one preference row into token ids for DPO, per the reference sheet: tokenize prompt and prompt+response
// and take the response as what follows the prompt; BOS once when the model uses it, EOS after each response;
// truncation by max_length / max_prompt_length with keep_end or keep_start; pairs that cannot fit are dropped
// (or, on request, their responses truncated, as TRL does). Pre-tokenized rows are used exactly as given.

import { type PreferenceRow, RowError } from './preference-rows.ts';
import type { TextTokenizer } from './tokenizer.ts';

export interface TruncationSettings {
  max_length: number; // prompt + response, in tokens
  max_prompt_length: number;
  truncation_mode: 'keep_end' | 'keep_start'; // keep_end cuts the prompt's start
  /** Cut responses that still do not fit instead of dropping the pair (TRL's behaviour). */
  truncate_responses?: boolean;
}

export type TokenizedPair =
  | {
      kind: 'ok';
      prompt_input_ids: number[];
      chosen_input_ids: number[];
      rejected_input_ids: number[];
      /** Non-fatal findings, e.g. a token merge across the prompt/response boundary. */
      warnings: string[];
      truncated: boolean;
    }
  | { kind: 'dropped'; reason: string };

export function tokenizePair(
  tokenizer: TextTokenizer,
  row: PreferenceRow,
  index: number,
  settings: TruncationSettings,
): TokenizedPair {
  if (row.format === 'pretokenized') {
    const length = row.prompt.length + Math.max(row.chosen.length, row.rejected.length);
    if (length > settings.max_length)
      return {
        kind: 'dropped',
        reason: `row ${index}: ${length} tokens > max_length ${settings.max_length}`,
      };
    return {
      kind: 'ok',
      prompt_input_ids: row.prompt,
      chosen_input_ids: row.chosen,
      rejected_input_ids: row.rejected,
      warnings: [],
      truncated: false,
    };
  }
  const warnings: string[] = [];
  const [promptText, chosenText, rejectedText] =
    row.format === 'standard'
      ? [row.prompt, row.chosen, row.rejected]
      : renderConversation(tokenizer, row, index);
  const promptIds = tokenizer.encode(promptText, { addSpecialTokens: false });
  const response = (text: string, field: string) => {
    const full = tokenizer.encode(promptText + text, { addSpecialTokens: false });
    let ids: number[];
    if (promptIds.every((id, i) => full[i] === id)) {
      ids = full.slice(promptIds.length);
    } else {
      // A token merges across the boundary: score the response as tokenized on its own instead.
      warnings.push(
        `row ${index}: ${field}: the prompt's tokens are not a prefix of prompt+${field}; tokenized separately`,
      );
      ids = tokenizer.encode(text, { addSpecialTokens: false });
    }
    const eos = tokenizer.eosTokenId;
    if (eos !== undefined && ids.at(-1) !== eos) ids.push(eos);
    return ids;
  };
  const chosenIds = response(chosenText, 'chosen');
  const rejectedIds = response(rejectedText, 'rejected');
  if (JSON.stringify(chosenIds) === JSON.stringify(rejectedIds)) {
    return { kind: 'dropped', reason: `row ${index}: chosen and rejected are identical after tokenization` };
  }
  const bos = usesBos(tokenizer) && promptIds[0] !== tokenizer.bosTokenId ? [tokenizer.bosTokenId!] : [];
  return truncate(bos, promptIds, chosenIds, rejectedIds, settings, index, warnings);
}

function truncate(
  bos: number[],
  prompt: number[],
  chosen: number[],
  rejected: number[],
  settings: TruncationSettings,
  index: number,
  warnings: string[],
): TokenizedPair {
  const longest = () => bos.length + prompt.length + Math.max(chosen.length, rejected.length);
  let truncated = false;
  if (longest() > settings.max_length && bos.length + prompt.length > settings.max_prompt_length) {
    const keep = Math.max(settings.max_prompt_length - bos.length, 0);
    prompt =
      settings.truncation_mode === 'keep_end' ? prompt.slice(prompt.length - keep) : prompt.slice(0, keep);
    truncated = true;
  }
  if (longest() > settings.max_length) {
    const room = settings.max_length - bos.length - prompt.length;
    if (!settings.truncate_responses || room <= 0) {
      return {
        kind: 'dropped',
        reason: `row ${index}: ${longest()} tokens do not fit max_length ${settings.max_length}`,
      };
    }
    chosen = chosen.slice(0, room);
    rejected = rejected.slice(0, room);
    truncated = true;
  }
  return {
    kind: 'ok',
    prompt_input_ids: [...bos, ...prompt],
    chosen_input_ids: chosen,
    rejected_input_ids: rejected,
    warnings,
    truncated,
  };
}

/** Whether the model expects BOS: the config says so, or the tokenizer's post-processor adds it. */
function usesBos(tokenizer: TextTokenizer): boolean {
  if (tokenizer.bosTokenId === undefined) return false;
  if (tokenizer.config.add_bos_token !== undefined) return tokenizer.config.add_bos_token;
  return tokenizer.encode('', { addSpecialTokens: true })[0] === tokenizer.bosTokenId;
}

/** Prompt with the generation prompt appended; each response is what the full conversation adds after it. */
function renderConversation(
  tokenizer: TextTokenizer,
  row: Extract<PreferenceRow, { format: 'conversational' }>,
  index: number,
) {
  const prompt = tokenizer.applyChatTemplate(row.prompt, { addGenerationPrompt: true });
  const continuation = (messages: typeof row.chosen, field: string) => {
    const full = tokenizer.applyChatTemplate([...row.prompt, ...messages]);
    if (!full.startsWith(prompt)) {
      throw new RowError(
        index,
        field,
        'the chat template renders the prompt differently inside the full conversation',
      );
    }
    return full.slice(prompt.length);
  };
  return [prompt, continuation(row.chosen, 'chosen'), continuation(row.rejected, 'rejected')] as const;
}
