// Turns one preference row into token ids for DPO (reference sheet, "Tokenization"), purely and deterministically:
// tokenize the prompt and prompt+response and take the response as what follows the prompt's ids; BOS once,
// EOS after each response; truncation by max_length / max_prompt_length with keep_end or keep_start; pairs that
// cannot fit are dropped (or their responses cut, on request). Pre-tokenized rows are used exactly as given.
//
// Where TRL 1.16 differs, and why we don't follow it:
// - a token merging across the prompt/response boundary: TRL ends the prompt at the first differing token; we
//   keep the whole prompt and tokenize the response on its own (the prompt the model sees stays the one given);
// - truncation: TRL cuts whole sequences in the collator (keep_end may cut BOS, keep_start the EOS); we follow
//   TRL ≤ 0.11 (cut the prompt to max_prompt_length, keep BOS first, then drop or cut responses);
// - EOS: TRL adds it only to non-conversational rows; we add it to every response that does not already end
//   with it (trailing whitespace tokens after EOS, as ChatML's "<|im_end|>\n", count as ending with it).

import { ChatTemplateError } from './chat-template.ts';
import { type ChatMessage, type PreferenceRow, RowError } from './preference-rows.ts';
import type { TextTokenizer } from './tokenizer.ts';

export interface TruncationSettings {
  max_length: number; // prompt + the longer response, in tokens, BOS and EOS included
  max_prompt_length: number; // the prompt after truncation, BOS included
  truncation_mode: 'keep_end' | 'keep_start'; // keep_end cuts the prompt's start, keep_start its end
  /**
   * A pair still too long once its prompt is cut to max_prompt_length is dropped (default, false) or, when
   * true, both responses are cut to the room left (TRL ≤ 0.11; a cut response loses its EOS).
   */
  truncate_responses?: boolean;
}

export interface PairTokenizationSettings extends TruncationSettings {
  /** Extra chat-template variables for conversational rows (tools, date_string, enable_thinking...). */
  chat_template_kwargs?: Record<string, unknown>;
}

export type PairField = 'prompt' | 'chosen' | 'rejected';

export type PairWarningKind =
  /** The prompt's ids are not a prefix of prompt+response's ids: the response was tokenized on its own. */
  | 'boundary_merge'
  /** The chat template renders the prompt differently inside the full conversation: the prompt became the
   * renderings' common prefix (TRL's fallback). */
  | 'template_not_prefix'
  /** No prompt and no BOS: nothing precedes the first response token, so it cannot be scored. */
  | 'no_context';

export interface PairWarning {
  kind: PairWarningKind;
  field: PairField;
  message: string; // starts with "row N: field:"
}

export type DropCause = 'too_long' | 'identical';

export type TokenizedPair =
  | {
      kind: 'ok';
      prompt_input_ids: number[];
      chosen_input_ids: number[];
      rejected_input_ids: number[];
      warnings: PairWarning[];
      truncated: boolean;
    }
  | { kind: 'dropped'; cause: DropCause; reason: string };

/** Token ids of one row (`index` names it in warnings, drop reasons and RowErrors). */
export function tokenizePair(
  tokenizer: TextTokenizer,
  row: PreferenceRow,
  index: number,
  settings: PairTokenizationSettings,
): TokenizedPair {
  checkSettings(settings);
  if (row.format === 'pretokenized') {
    const length = row.prompt.length + Math.max(row.chosen.length, row.rejected.length);
    if (length > settings.max_length)
      return tooLong(index, `${length} tokens > max_length ${settings.max_length} (pre-tokenized, not cut)`);
    if (sameIds(row.chosen, row.rejected)) return identical(index, false);
    return {
      kind: 'ok',
      prompt_input_ids: [...row.prompt],
      chosen_input_ids: [...row.chosen],
      rejected_input_ids: [...row.rejected],
      warnings: [],
      truncated: false,
    };
  }
  const warnings: PairWarning[] = [];
  const warn = (kind: PairWarningKind, field: PairField, problem: string) =>
    warnings.push({ kind, field, message: `row ${index}: ${field}: ${problem}` });
  const text =
    row.format === 'standard'
      ? row
      : renderConversation(tokenizer, row, index, settings.chat_template_kwargs ?? {}, warn);

  let prompt = tokenizer.encode(text.prompt, { addSpecialTokens: false });
  const chosen = responseIds(tokenizer, text.prompt, prompt, text.chosen, 'chosen', warn);
  const rejected = responseIds(tokenizer, text.prompt, prompt, text.rejected, 'rejected', warn);

  // BOS once, kept first through truncation: the text's own (e.g. a template's {{ bos_token }}) or, when the
  // tokenizer adds one on encode, ours.
  const bosId = tokenizer.bosTokenId;
  let bos: number[] = [];
  if (bosId !== undefined && prompt[0] === bosId) [bos, prompt] = [[bosId], prompt.slice(1)];
  else if (tokenizer.addsBos) bos = [bosId!];
  if (bos.length + prompt.length === 0)
    warn('no_context', 'prompt', 'empty prompt and no BOS: the first response token cannot be scored');

  const fitted = truncate(bos, prompt, chosen, rejected, settings, index);
  if (fitted.kind === 'dropped') return fitted;
  if (sameIds(fitted.chosen_input_ids, fitted.rejected_input_ids)) return identical(index, fitted.truncated);
  return { ...fitted, warnings };
}

/** What prompt+response adds after the prompt's ids, then EOS unless the response already ends with it. */
function responseIds(
  tokenizer: TextTokenizer,
  promptText: string,
  promptIds: number[],
  responseText: string,
  field: 'chosen' | 'rejected',
  warn: (kind: PairWarningKind, field: PairField, problem: string) => void,
): number[] {
  const full = tokenizer.encode(promptText + responseText, { addSpecialTokens: false });
  let ids: number[];
  if (sameIds(full.slice(0, promptIds.length), promptIds)) {
    ids = full.slice(promptIds.length);
  } else {
    warn(
      'boundary_merge',
      field,
      `a token merges across the boundary after ${JSON.stringify(promptText.slice(-12))}: the prompt's ids are ` +
        `not a prefix of prompt+${field}'s, so ${field} was tokenized on its own`,
    );
    ids = tokenizer.encode(responseText, { addSpecialTokens: false });
  }
  const eos = tokenizer.eosTokenId;
  if (eos !== undefined && !endsWithEos(tokenizer, ids, eos)) ids.push(eos);
  return ids;
}

/** EOS last, or followed only by whitespace (templates close turns with "<|im_end|>\n", "</s>\n"...). */
function endsWithEos(tokenizer: TextTokenizer, ids: number[], eos: number): boolean {
  const at = ids.lastIndexOf(eos);
  return at >= 0 && tokenizer.decode(ids.slice(at + 1)).trim() === '';
}

type Fitted = Omit<Extract<TokenizedPair, { kind: 'ok' }>, 'warnings'>;

function truncate(
  bos: number[],
  prompt: number[],
  chosen: number[],
  rejected: number[],
  settings: TruncationSettings,
  index: number,
): Fitted | Extract<TokenizedPair, { kind: 'dropped' }> {
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
      return tooLong(
        index,
        `${longest()} tokens with the prompt cut to ${bos.length + prompt.length} > max_length ${settings.max_length}`,
      );
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
    truncated,
  };
}

/**
 * Prompt = the prompt messages with the generation prompt; each response = what the full conversation's
 * rendering adds after it. When a template renders the prompt differently inside the full conversation (e.g.
 * a generation prompt that opens a <think> block the history drops), the prompt becomes the renderings' common
 * prefix, as TRL does, with a warning.
 */
function renderConversation(
  tokenizer: TextTokenizer,
  row: Extract<PreferenceRow, { format: 'conversational' }>,
  index: number,
  context: Record<string, unknown>,
  warn: (kind: PairWarningKind, field: PairField, problem: string) => void,
): { prompt: string; chosen: string; rejected: string } {
  const render = (messages: ChatMessage[], field: PairField, addGenerationPrompt: boolean) => {
    try {
      return tokenizer.applyChatTemplate(messages, { addGenerationPrompt, context });
    } catch (error) {
      if (error instanceof ChatTemplateError) throw new RowError(index, field, error.message);
      throw error;
    }
  };
  const rendered = {
    prompt: render(row.prompt, 'prompt', true),
    chosen: render([...row.prompt, ...row.chosen], 'chosen', false),
    rejected: render([...row.prompt, ...row.rejected], 'rejected', false),
  };
  let prompt = rendered.prompt;
  for (const field of ['chosen', 'rejected'] as const) {
    const full = rendered[field];
    if (full.startsWith(rendered.prompt)) continue;
    const at = commonPrefixLength(rendered.prompt, full);
    warn(
      'template_not_prefix',
      field,
      `the chat template renders the prompt differently inside the full conversation, from character ${at}: ` +
        `${JSON.stringify(rendered.prompt.slice(at, at + 24))} vs ${JSON.stringify(full.slice(at, at + 24))}; ` +
        'the prompt ends there',
    );
    prompt = prompt.slice(0, at);
  }
  return {
    prompt,
    chosen: rendered.chosen.slice(prompt.length),
    rejected: rendered.rejected.slice(prompt.length),
  };
}

function commonPrefixLength(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** A pair that teaches nothing: its two responses are the same ids. */
function identical(index: number, truncated: boolean): TokenizedPair {
  return {
    kind: 'dropped',
    cause: 'identical',
    reason: `row ${index}: chosen and rejected are identical after tokenization${truncated ? ' and truncation' : ''}`,
  };
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

function tooLong(index: number, detail: string): Extract<TokenizedPair, { kind: 'dropped' }> {
  return { kind: 'dropped', cause: 'too_long', reason: `row ${index}: ${detail}` };
}

function checkSettings(settings: TruncationSettings): void {
  for (const key of ['max_length', 'max_prompt_length'] as const) {
    const value = settings[key];
    if (!Number.isInteger(value) || value <= 0)
      throw new RangeError(`${key}: expected a positive integer, received ${JSON.stringify(value)}`);
  }
  if (settings.truncation_mode !== 'keep_end' && settings.truncation_mode !== 'keep_start') {
    throw new RangeError(
      `truncation_mode: expected keep_end or keep_start, received ${JSON.stringify(settings.truncation_mode)}`,
    );
  }
}

export interface TokenizationTally {
  ok: number;
  truncated: number; // among ok
  dropped: Record<DropCause, number>;
  warnings: Record<PairWarningKind, number>; // pairs with at least one warning of each kind
}

/** Counts of a run of tokenizePair results, for logs and dataset manifests. */
export function tallyPairs(pairs: Iterable<TokenizedPair>): TokenizationTally {
  const tally: TokenizationTally = {
    ok: 0,
    truncated: 0,
    dropped: { too_long: 0, identical: 0 },
    warnings: { boundary_merge: 0, template_not_prefix: 0, no_context: 0 },
  };
  for (const pair of pairs) {
    if (pair.kind === 'dropped') {
      tally.dropped[pair.cause]++;
      continue;
    }
    tally.ok++;
    if (pair.truncated) tally.truncated++;
    for (const kind of new Set(pair.warnings.map((warning) => warning.kind))) tally.warnings[kind]++;
  }
  return tally;
}
