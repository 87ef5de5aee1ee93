// Preference data from a file to tokenized pairs: read JSONL, a JSON array or Parquet, validate every row (TRL formats),
// drop exact duplicates, tokenize with truncation, and hold out an evaluation split by hash.
// Invalid rows are named by line; pairs that cannot fit or that tokenize identically are skipped and counted.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import type { DatasetConfig, TrainingConfig } from '../config/schema.ts';
import { detectFormat, type PreferenceRow, parsePreferenceRow, RowError } from '../text/preference-rows.ts';
import {
  type TokenizationTally,
  type TokenizedPair,
  tallyPairs,
  tokenizePair,
} from '../text/preference-tokenizer.ts';
import type { TextTokenizer } from '../text/tokenizer.ts';
import type { TrainingPair } from './batches.ts';

/** The data cannot be used: the message names the file and the rows. */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';
}

export interface RawRows {
  source: string;
  /** Parsed JSON values, or a syntax error message, with the 1-based line (JSONL) or element (JSON) number. */
  rows: { line: number; value?: unknown; syntaxError?: string }[];
}

export async function readPreferenceFile(
  path: string,
  fileType: DatasetConfig['file_type'],
): Promise<RawRows> {
  const type = fileType === 'auto' ? typeFromExtension(path) : fileType;
  if (type === 'parquet') return readParquet(path);
  const text = await readFile(path, 'utf8');
  if (type === 'json') {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new DatasetError(`${path}: invalid JSON (${(error as Error).message})`);
    }
    if (!Array.isArray(value)) throw new DatasetError(`${path}: expected a JSON array of rows`);
    return { source: path, rows: value.map((row, i) => ({ line: i + 1, value: row })) };
  }
  const rows: RawRows['rows'] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (!line.trim()) continue;
    try {
      rows.push({ line: i + 1, value: JSON.parse(line) });
    } catch (error) {
      rows.push({ line: i + 1, syntaxError: `invalid JSON (${(error as Error).message})` });
    }
  }
  return { source: path, rows };
}

/** Parquet rows as objects (hyparquet: pure JS; snappy, as datasets and pyarrow write by default). */
async function readParquet(path: string): Promise<RawRows> {
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: await asyncBufferFromFile(path) });
  } catch (error) {
    throw new DatasetError(`${path}: cannot read as Parquet (${(error as Error).message})`);
  }
  return { source: path, rows: rows.map((row, i) => ({ line: i + 1, value: withNumbers(row) })) };
}

/** int64 columns arrive as bigint; token ids and the like are numbers everywhere else. */
function withNumbers(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(withNumbers);
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, withNumbers(item)]));
  return value;
}

function typeFromExtension(path: string): 'jsonl' | 'json' | 'parquet' {
  const extension = extname(path).toLowerCase();
  if (extension === '.json') return 'json';
  if (extension === '.parquet') return 'parquet';
  return 'jsonl';
}

export interface PreparedPairs {
  pairs: TrainingPair[];
  rows: number;
  invalid: string[];
  duplicates: number;
  tally: TokenizationTally;
  /** The first few reasons pairs were skipped. */
  dropped: string[];
}

/**
 * Validates, dedupes and tokenizes rows. More than max_invalid_rows invalid rows, or no usable pair, is a
 * DatasetError naming the file and the first problems. `tokenizer` is loaded only when a row needs it.
 */
export async function preparePairs(
  raw: RawRows,
  settings: {
    format: DatasetConfig['format'];
    maxInvalidRows: number;
    dedupe: boolean;
    truncation: Pick<TrainingConfig, 'max_length' | 'max_prompt_length' | 'truncation_mode'>;
    tokenizer: () => Promise<TextTokenizer>;
  },
): Promise<PreparedPairs> {
  const invalid: string[] = [];
  const seen = new Set<string>();
  let duplicates = 0;
  const tokenized: TokenizedPair[] = [];
  const pairs: TrainingPair[] = [];
  let format = settings.format;
  for (const { line, value, syntaxError } of raw.rows) {
    let row: PreferenceRow;
    try {
      if (syntaxError) throw new RowError(line, '', syntaxError);
      row = parsePreferenceRow(value, line, format);
    } catch (error) {
      if (!(error instanceof RowError)) throw error;
      invalid.push(error.message.replace(/^row/, 'line'));
      continue;
    }
    // The first valid row fixes the format, so a stray row of another shape is reported, not reinterpreted.
    if (format === 'auto') format = detectFormat(value as Record<string, unknown>) ?? 'auto';
    if (settings.dedupe) {
      const key = JSON.stringify([row.prompt, row.chosen, row.rejected]);
      if (seen.has(key)) {
        duplicates++;
        continue;
      }
      seen.add(key);
    }
    const tokenizer =
      row.format === 'pretokenized' ? (undefined as unknown as TextTokenizer) : await settings.tokenizer();
    const pair = tokenizePair(tokenizer, row, line, settings.truncation);
    tokenized.push(pair);
    if (pair.kind === 'ok') {
      const { prompt_input_ids, chosen_input_ids, rejected_input_ids } = pair;
      pairs.push({ prompt_input_ids, chosen_input_ids, rejected_input_ids });
    }
  }
  if (invalid.length > settings.maxInvalidRows) {
    throw new DatasetError(
      `${raw.source}: ${invalid.length} invalid row(s) (dataset.max_invalid_rows is ${settings.maxInvalidRows}):\n  ` +
        invalid.slice(0, 10).join('\n  ') +
        (invalid.length > 10 ? `\n  … and ${invalid.length - 10} more` : ''),
    );
  }
  const tally = tallyPairs(tokenized);
  const dropped = tokenized.flatMap((pair) => (pair.kind === 'dropped' ? [pair.reason] : [])).slice(0, 3);
  if (pairs.length === 0) {
    throw new DatasetError(
      `${raw.source}: no usable pairs in ${raw.rows.length} row(s): ${invalid.length} invalid, ${duplicates} duplicate, ` +
        `${tally.dropped.too_long} longer than max_length ${settings.truncation.max_length}, ` +
        `${tally.dropped.identical} with identical chosen and rejected`,
    );
  }
  return { pairs, rows: raw.rows.length, invalid, duplicates, tally, dropped };
}

/**
 * Holds out each pair whose digest of (split_seed, token ids) falls below `fraction`: the same split on every
 * machine, and a pair keeps its side when other rows are added, removed or reordered. At least one pair is
 * held out when fraction > 0.
 */
export function splitPairs(
  pairs: readonly TrainingPair[],
  fraction: number,
  seed: number,
): { train: TrainingPair[]; eval: TrainingPair[] } {
  if (fraction === 0) return { train: [...pairs], eval: [] };
  const scores = pairs.map(
    (pair) =>
      createHash('sha256')
        .update(
          `${seed}:${JSON.stringify([pair.prompt_input_ids, pair.chosen_input_ids, pair.rejected_input_ids])}`,
        )
        .digest()
        .readUInt32BE(0) /
      2 ** 32,
  );
  const lowest = scores.indexOf(Math.min(...scores));
  const held = scores.map((score, i) => score < fraction || i === lowest);
  if (held.every(Boolean)) {
    throw new DatasetError(
      `dataset.eval_fraction ${fraction} of ${pairs.length} pair(s) leaves nothing to train on; lower it or give dataset.eval`,
    );
  }
  return { train: pairs.filter((_, i) => !held[i]), eval: pairs.filter((_, i) => held[i]) };
}
