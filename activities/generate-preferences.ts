// Optional stage: preference pairs the way the paper builds them for IMDb. The model (the SFT model when that
// stage ran) samples completions_per_prompt completions per prompt; evaluation.reward scores them; every two
// completions of a prompt with different rewards form a pair, the higher-rewarded one chosen. Writes
// generated/<key>/pairs.jsonl (standard {prompt, chosen, rejected} rows) and stats.json, manifest last; the
// pipeline then trains on that file.

import { join } from 'node:path';
import { z } from 'zod';
import type { DpoflowConfig } from '../config/schema.ts';
import { loadCheckpoint } from '../engine/models/checkpoint.ts';
import { Generator } from '../engine/models/generate.ts';
import { localFile } from '../store/from-config.ts';
import { loadTokenizer } from '../text/tokenizer.ts';
import { DatasetError, readPreferenceFile } from '../trainer/dataset.ts';
import { tokenizerDigests, tokenizerFolder } from './prepare-data.ts';
import { modelDigest } from './reference-logprobs.ts';
import { openReward } from './rewards.ts';
import { digest, fileDigest, publishedResult, type StageContext } from './stage.ts';
import { withModelFolder } from './train-policy.ts';

const FORMAT = 'dpoflow.generated-preferences';
/** Sequences sampled per generator call. */
const SAMPLE_BATCH = 64;

export interface GeneratedPairs {
  key: string;
  prefix: string;
  /** The pairs file, usable as dataset.train. */
  uri: string;
  prompts: number;
  pairs: number;
  reused: boolean;
}

const promptRowSchema = z.looseObject({ prompt: z.string().min(1) });

export async function generatePreferences(
  config: DpoflowConfig,
  context: StageContext,
): Promise<GeneratedPairs> {
  const { store } = context;
  const settings = config.stages.generate_preferences;
  if (!settings.prompts)
    throw new Error('stages.generate_preferences.prompts is required when the stage is enabled');
  const promptsUri = settings.prompts;
  return withModelFolder(config.model.uri, 'dpoflow-generate-', context, async (modelDir, scratch) => {
    const promptsFile = await localFile(promptsUri, join(scratch, 'prompts'), context.s3);
    const tokenizerDir = await tokenizerFolder(config, join(scratch, 'tokenizer'), context);
    const key = digest({
      format: FORMAT,
      version: 1,
      model: await modelDigest(modelDir),
      prompts: await fileDigest(promptsFile),
      tokenizer: await tokenizerDigests(tokenizerDir),
      settings,
      reward: config.evaluation.reward,
      max_prompt_length: config.training.max_prompt_length,
      seed: config.seed,
    });
    const prefix = `generated/${key}`;
    const existing = await publishedResult<Omit<GeneratedPairs, 'reused'>>(store, prefix, FORMAT);
    if (existing) return existing;

    const raw = await readPreferenceFile(promptsFile, 'auto');
    const invalid: string[] = [];
    const prompts: string[] = [];
    for (const { line, value } of raw.rows) {
      const row = promptRowSchema.safeParse(value);
      if (row.success) prompts.push(row.data.prompt);
      else invalid.push(`line ${line}: expected {"prompt": "..."}`);
    }
    if (invalid.length > config.dataset.max_invalid_rows || prompts.length === 0) {
      throw new DatasetError(
        `${promptsUri}: ${prompts.length} prompt(s), ${invalid.length} invalid row(s) (dataset.max_invalid_rows is ${config.dataset.max_invalid_rows})` +
          (invalid.length ? `:\n  ${invalid.slice(0, 10).join('\n  ')}` : ''),
      );
    }

    const tokenizer = await loadTokenizer(tokenizerDir, { chatTemplate: config.model.chat_template });
    const bos = tokenizer.addsBos && tokenizer.bosTokenId !== undefined ? [tokenizer.bosTokenId] : [];
    const room = config.training.max_prompt_length - bos.length;
    const promptIds = prompts.map((prompt) => [
      ...bos,
      ...tokenizer.encode(prompt, { addSpecialTokens: false }).slice(-room),
    ]);
    const model = await loadCheckpoint(modelDir);
    const generator = await Generator.create(model.spec, model.parameters, context.runtime);
    const reward = await openReward(config.evaluation.reward, {
      scratch,
      s3: context.s3,
      runtime: context.runtime,
    });
    const lines: string[] = [];
    try {
      const per = settings.completions_per_prompt;
      const requests = promptIds.flatMap((ids, p) => Array.from({ length: per }, () => ({ ids, p })));
      const completions: string[] = [];
      for (let start = 0; start < requests.length; start += SAMPLE_BATCH) {
        const batch = requests.slice(start, start + SAMPLE_BATCH);
        const sampled = await generator.generate(
          batch.map((request) => request.ids),
          {
            maxNewTokens: settings.max_new_tokens,
            temperature: settings.temperature,
            stopTokens: model.spec.eosTokenIds,
            seed: config.seed + start,
          },
        );
        for (const ids of sampled) completions.push(tokenizer.decode(ids, { skipSpecialTokens: true }));
        context.heartbeat?.({ stage: 'generate', sampled: completions.length, of: requests.length });
      }
      const rewards = await reward.score(
        requests.map(({ p }, i) => ({ prompt: prompts[p], completion: completions[i] })),
      );
      for (const [p, prompt] of prompts.entries()) {
        const own = requests.flatMap(({ p: q }, i) => (q === p ? [i] : []));
        for (const [a, i] of own.entries()) {
          for (const j of own.slice(a + 1)) {
            if (rewards[i] === rewards[j] || completions[i] === completions[j]) continue;
            const [chosen, rejected] = rewards[i] > rewards[j] ? [i, j] : [j, i];
            lines.push(
              `${JSON.stringify({ prompt, chosen: completions[chosen], rejected: completions[rejected] })}\n`,
            );
          }
        }
      }
    } finally {
      await reward.release();
      await generator.release();
    }
    if (lines.length === 0) {
      throw new DatasetError(
        `${promptsUri}: every completion of every prompt got the same reward, so no preference pair could be formed`,
      );
    }
    const body = lines.join('');
    await store.put(`${prefix}/pairs.jsonl`, body);
    const generated: Omit<GeneratedPairs, 'reused'> = {
      key,
      prefix,
      uri: store.uri(`${prefix}/pairs.jsonl`),
      prompts: prompts.length,
      pairs: lines.length,
    };
    await store.publishManifest(prefix, {
      format: FORMAT,
      formatVersion: 1,
      files: [{ path: 'pairs.jsonl', bytes: Buffer.byteLength(body) }],
      meta: generated,
    });
    return { ...generated, reused: false };
  });
}
