// `dpoflow score`: log-probs of each pair's chosen and rejected response under a model, one JSONL line per row.

import { createWriteStream } from 'node:fs';
import { readFile, rename, rm } from 'node:fs/promises';
import { loadCheckpoint } from '../engine/models/checkpoint.ts';
import { PairScorer } from '../engine/models/scorer.ts';
import { shutdownRuntime } from '../engine/runtime.ts';
import { parsePreferenceRow, RowError } from '../text/preference-rows.ts';
import {
  type TokenizedPair,
  type TruncationSettings,
  tallyPairs,
  tokenizePair,
} from '../text/preference-tokenizer.ts';
import { loadTokenizer, type TextTokenizer } from '../text/tokenizer.ts';
import { type Command, exitCodes, stringOptions, UsageError } from './command.ts';

const usage = `usage: dpoflow score --model DIR --data FILE --out FILE [options]

Writes one JSONL line per input row: {"index", "logp_chosen", "logp_rejected", "n_tokens_chosen",
"n_tokens_rejected"} — summed log-probs of the response tokens (prompt and padding masked, EOS counted).
Rows are TRL preference rows (standard, implicit prompt, conversational or pre-tokenized), one JSON per line.

options:
  --model DIR              Hugging Face model directory (config.json, model.safetensors, tokenizer.json)
  --data FILE              input JSONL
  --out FILE               output JSONL (written whole, then moved into place)
  --batch-size N           pairs per run (default 8)
  --max-length N           longest prompt + response in tokens (default 1024)
  --max-prompt-length N    longest prompt after truncation (default 512)
  --truncation-mode MODE   keep_end (cut the prompt's start, default) or keep_start
  --device cpu|cuda        execution provider (default cpu)
  --threads N              intra-op threads (default: one per core)

Invalid rows are listed with their line numbers and make the exit code 2; pairs that do not fit
--max-length are skipped and counted.`;

function positiveInt(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0)
    throw new UsageError(`--${name}: expected a positive integer, received "${value}"`);
  return number;
}

async function run(args: string[]): Promise<number> {
  const values = stringOptions(args, [
    'model',
    'data',
    'out',
    'batch-size',
    'max-length',
    'max-prompt-length',
    'truncation-mode',
    'device',
    'threads',
  ]);
  for (const required of ['model', 'data', 'out'])
    if (!values[required]) throw new UsageError(`--${required} is required`);
  const device = values.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda')
    throw new UsageError(`--device: expected cpu or cuda, received "${device}"`);
  const mode = values['truncation-mode'] ?? 'keep_end';
  if (mode !== 'keep_end' && mode !== 'keep_start')
    throw new UsageError(`--truncation-mode: expected keep_end or keep_start, received "${mode}"`);
  const settings: TruncationSettings = {
    max_length: positiveInt(values['max-length'], 'max-length', 1024),
    max_prompt_length: positiveInt(values['max-prompt-length'], 'max-prompt-length', 512),
    truncation_mode: mode,
  };
  const batchSize = positiveInt(values['batch-size'], 'batch-size', 8);

  const lines = (await readFile(values.data!, 'utf8')).split('\n');
  const checkpoint = await loadCheckpoint(values.model!);
  let tokenizer: TextTokenizer | undefined;
  const invalid: string[] = [];
  const tokenized: TokenizedPair[] = [];
  const pairs: { index: number; ids: Extract<TokenizedPair, { kind: 'ok' }> }[] = [];
  let index = 0;
  for (const [lineIndex, line] of lines.entries()) {
    if (!line.trim()) continue;
    const lineNumber = lineIndex + 1;
    try {
      const row = parsePreferenceRow(JSON.parse(line), lineNumber);
      if (row.format !== 'pretokenized') tokenizer ??= await loadTokenizer(values.model!);
      const pair = tokenizePair(tokenizer!, row, lineNumber, settings);
      tokenized.push(pair);
      if (pair.kind === 'ok') pairs.push({ index, ids: pair });
    } catch (error) {
      if (error instanceof SyntaxError) invalid.push(`line ${lineNumber}: invalid JSON (${error.message})`);
      else if (error instanceof RowError) invalid.push(error.message.replace(/^row/, 'line'));
      else throw error;
    }
    index++;
  }

  const scorer = await PairScorer.create(checkpoint.spec, checkpoint.parameters, {
    executionProvider: device,
    intraOpThreads: values.threads ? positiveInt(values.threads, 'threads', 0) : 0,
  });
  const partial = `${values.out}.partial`;
  const out = createWriteStream(partial);
  const started = performance.now();
  try {
    // Similar lengths side by side waste less padding; output order is the input's.
    const order = [...pairs].sort((a, b) => length(a.ids) - length(b.ids));
    const results = new Map<number, string>();
    for (let start = 0; start < order.length; start += batchSize) {
      const batch = order.slice(start, start + batchSize);
      const scores = await scorer.score(batch.map((pair) => pair.ids));
      batch.forEach((pair, i) => {
        const { logp_chosen, logp_rejected, n_tokens_chosen, n_tokens_rejected } = scores[i];
        results.set(
          pair.index,
          JSON.stringify({
            index: pair.index,
            logp_chosen,
            logp_rejected,
            n_tokens_chosen,
            n_tokens_rejected,
          }),
        );
      });
      const done = Math.min(start + batchSize, order.length);
      const rate = done / ((performance.now() - started) / 1000);
      process.stderr.write(`\rscored ${done}/${order.length} pairs (${rate.toFixed(1)} pairs/s)`);
    }
    process.stderr.write('\n');
    for (const pair of pairs) out.write(`${results.get(pair.index)}\n`);
    await new Promise<void>((resolve, reject) =>
      out.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
    await rename(partial, values.out!);
  } catch (error) {
    out.destroy();
    await rm(partial, { force: true });
    throw error;
  } finally {
    await scorer.release();
    await shutdownRuntime();
  }
  reportTokenization(tokenized, settings);
  if (invalid.length) {
    console.error(`${invalid.length} invalid row(s):\n  ${invalid.join('\n  ')}`);
    return exitCodes.usage;
  }
  return exitCodes.ok;
}

/** Counts of what tokenization skipped or flagged, with the first few reasons, on stderr. */
function reportTokenization(tokenized: TokenizedPair[], settings: TruncationSettings): void {
  const tally = tallyPairs(tokenized);
  const dropped = tokenized.flatMap((pair) => (pair.kind === 'dropped' ? [pair.reason] : []));
  if (tally.dropped.too_long)
    console.error(
      `skipped ${tally.dropped.too_long} pair(s) longer than --max-length ${settings.max_length}`,
    );
  if (tally.dropped.identical)
    console.error(
      `skipped ${tally.dropped.identical} pair(s) whose chosen and rejected tokenize identically`,
    );
  if (dropped.length) console.error(`  e.g. ${dropped.slice(0, 3).join('; ')}`);
  if (tally.truncated) console.error(`truncated ${tally.truncated} prompt(s) or response(s) to fit`);
  for (const [kind, count] of Object.entries(tally.warnings))
    if (count) console.error(`warning: ${count} pair(s) with ${kind}`);
}

function length(pair: {
  prompt_input_ids: number[];
  chosen_input_ids: number[];
  rejected_input_ids: number[];
}): number {
  return (
    pair.prompt_input_ids.length + Math.max(pair.chosen_input_ids.length, pair.rejected_input_ids.length)
  );
}

export const scoreCommand: Command = {
  name: 'score',
  summary: 'log-probs of chosen and rejected responses under a model',
  usage,
  run,
};
