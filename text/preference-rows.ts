// The preference-data formats users bring (TRL's), as zod schemas: the single source of truth for rows.
// Standard (explicit or implicit prompt), conversational, and pre-tokenized.

import { z } from 'zod';

const text = z.string();
const message = z.strictObject({ role: z.string().min(1), content: z.string() });
const messages = z.array(message).min(1);
const tokenIds = z.array(z.number().int().nonnegative());

export const standardRowSchema = z.looseObject({ prompt: text, chosen: text, rejected: text });
export const implicitPromptRowSchema = z.looseObject({ chosen: text, rejected: text });
export const conversationalRowSchema = z.looseObject({
  prompt: messages.optional(),
  chosen: messages,
  rejected: messages,
});
export const pretokenizedRowSchema = z.looseObject({
  prompt_input_ids: tokenIds,
  chosen_input_ids: tokenIds.min(1),
  rejected_input_ids: tokenIds.min(1),
});

export type ChatMessage = z.infer<typeof message>;
export type StandardRow = z.infer<typeof standardRowSchema>;
export type ConversationalRow = z.infer<typeof conversationalRowSchema>;
export type PretokenizedRow = z.infer<typeof pretokenizedRowSchema>;

export type PreferenceFormat = 'standard' | 'implicit_prompt' | 'conversational' | 'pretokenized';

export type PreferenceRow =
  | { format: 'standard'; prompt: string; chosen: string; rejected: string }
  | { format: 'conversational'; prompt: ChatMessage[]; chosen: ChatMessage[]; rejected: ChatMessage[] }
  | { format: 'pretokenized'; prompt: number[]; chosen: number[]; rejected: number[] };

export class RowError extends Error {
  override readonly name = 'RowError';
  constructor(
    readonly row: number,
    readonly field: string,
    problem: string,
  ) {
    super(`row ${row}: ${field ? `${field}: ` : ''}${problem}`);
  }
}

/** Which format a row is in, from its fields. */
export function detectFormat(raw: Record<string, unknown>): PreferenceFormat | undefined {
  if ('chosen_input_ids' in raw) return 'pretokenized';
  if (Array.isArray(raw.chosen)) return 'conversational';
  if (typeof raw.prompt === 'string') return 'standard';
  if (typeof raw.chosen === 'string') return 'implicit_prompt';
  return undefined;
}

/** Validates one row (index `row`, for messages) in the given or detected format and normalizes it. */
export function parsePreferenceRow(
  raw: unknown,
  row: number,
  format: PreferenceFormat | 'auto' = 'auto',
): PreferenceRow {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new RowError(row, '', 'expected a JSON object');
  const record = raw as Record<string, unknown>;
  const resolved = format === 'auto' ? detectFormat(record) : format;
  if (!resolved) {
    throw new RowError(
      row,
      '',
      `cannot tell the format from fields ${JSON.stringify(Object.keys(record))} (need chosen/rejected or *_input_ids)`,
    );
  }
  const schema = {
    standard: standardRowSchema,
    implicit_prompt: implicitPromptRowSchema,
    conversational: conversationalRowSchema,
    pretokenized: pretokenizedRowSchema,
  }[resolved];
  const result = schema.safeParse(record);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new RowError(row, issue.path.join('.'), `${issue.message} (${resolved} format)`);
  }
  switch (resolved) {
    case 'pretokenized': {
      const value = result.data as PretokenizedRow;
      return {
        format: 'pretokenized',
        prompt: value.prompt_input_ids,
        chosen: value.chosen_input_ids,
        rejected: value.rejected_input_ids,
      };
    }
    case 'conversational': {
      const value = result.data as ConversationalRow;
      if (value.prompt)
        return {
          format: 'conversational',
          prompt: value.prompt,
          chosen: value.chosen,
          rejected: value.rejected,
        };
      return { format: 'conversational', ...splitCommonMessages(value.chosen, value.rejected, row) };
    }
    case 'implicit_prompt': {
      const { chosen, rejected } = result.data as { chosen: string; rejected: string };
      const length = implicitPromptLength(chosen, rejected);
      return {
        format: 'standard',
        prompt: chosen.slice(0, length),
        chosen: chosen.slice(length),
        rejected: rejected.slice(length),
      };
    }
    default: {
      const value = result.data as StandardRow;
      return { format: 'standard', prompt: value.prompt, chosen: value.chosen, rejected: value.rejected };
    }
  }
}

/**
 * The implicit prompt of two strings, decided at string level as TRL's extract_prompt does: their common prefix,
 * less a final space (which then starts both responses, where BPE tokenizers attach it to the next word).
 * Never splits a UTF-16 surrogate pair. When one string is a prefix of the other its response is empty (EOS only).
 */
function implicitPromptLength(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (i > 0 && (i < a.length || i < b.length) && a[i - 1] === ' ') i--;
  if (i > 0 && /[\uD800-\uDBFF]/.test(a[i - 1])) i--;
  return i;
}

/** Implicit prompt for conversations: the messages both share, at message level. */
function splitCommonMessages(chosen: ChatMessage[], rejected: ChatMessage[], row: number) {
  let i = 0;
  const same = (a: ChatMessage, b: ChatMessage) => a.role === b.role && a.content === b.content;
  while (i < chosen.length && i < rejected.length && same(chosen[i], rejected[i])) i++;
  if (i === 0)
    throw new RowError(row, 'prompt', 'missing, and chosen and rejected share no leading messages');
  if (i === chosen.length || i === rejected.length)
    throw new RowError(row, 'chosen', 'chosen and rejected must differ after their shared messages');
  return { prompt: chosen.slice(0, i), chosen: chosen.slice(i), rejected: rejected.slice(i) };
}
