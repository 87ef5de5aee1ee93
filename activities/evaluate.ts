// Stage 4, evaluation: the trained policy against the reference on held-out prompts. Both sample
// samples_per_prompt completions per prompt; the configured reward scores them; the sequence-level KL(π‖π_ref)
// is estimated from the policy's own samples as mean(log π(y|x) − log π_ref(y|x)). With the held-out preference
// metrics of training, evaluate/<key>/ gets metrics.json, samples.jsonl and report.html (inline SVG), manifest
// last.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DpoflowConfig } from '../config/schema.ts';
import { type Checkpoint, loadCheckpoint } from '../engine/models/checkpoint.ts';
import { Generator } from '../engine/models/generate.ts';
import { PairScorer } from '../engine/models/scorer.ts';
import { localFolder } from '../store/from-config.ts';
import { loadTokenizer } from '../text/tokenizer.ts';
import type { PreparedData } from './prepare-data.ts';
import { readScoredPairs } from './reference-logprobs.ts';
import { openReward } from './rewards.ts';
import { digest, publishedResult, type StageContext } from './stage.ts';
import type { TrainedPolicy } from './train-policy.ts';

const FORMAT = 'dpoflow.evaluation';

export interface EvaluationMetrics {
  /** Held-out preference metrics of the trained policy (eval_loss, eval_rewards/accuracies, …). */
  preference: Record<string, number>;
  prompts: number;
  samples_per_prompt: number;
  reward_policy: number;
  reward_reference: number;
  /** Share of prompts whose mean policy reward beats the reference's (ties count half). */
  win_rate: number;
  /** Mean over policy samples of log π(y|x) − log π_ref(y|x), in nats per sequence. */
  kl: number;
}

export interface Evaluation {
  key: string;
  prefix: string;
  uri: string;
  metrics: EvaluationMetrics;
  reused: boolean;
}

interface Sample {
  prompt: string;
  model: 'policy' | 'reference';
  completion: string;
  reward: number;
  logp_policy?: number;
  logp_reference?: number;
}

export async function evaluatePolicy(
  config: DpoflowConfig,
  inputs: { data: PreparedData; trained: TrainedPolicy },
  context: StageContext,
): Promise<Evaluation> {
  const { store } = context;
  const settings = config.evaluation;
  const key = digest({
    format: FORMAT,
    version: 1,
    trained: inputs.trained.key,
    settings,
    seed: config.seed,
  });
  const prefix = `evaluate/${key}`;
  const existing = await publishedResult<Omit<Evaluation, 'reused'>>(store, prefix, FORMAT);
  if (existing) return existing;

  const scratch = await mkdtemp(join(tmpdir(), 'dpoflow-evaluate-'));
  try {
    const policy = await loadCheckpoint(
      await localFolder(inputs.trained.modelUri, join(scratch, 'policy'), context.s3),
    );
    const referenceDir = await localFolder(
      config.model.reference ?? config.model.uri,
      join(scratch, 'reference'),
      context.s3,
    );
    const reference = await loadCheckpoint(referenceDir);
    const tokenizer = await loadTokenizer(
      await localFolder(config.model.tokenizer ?? config.model.uri, join(scratch, 'tokenizer'), context.s3),
      { chatTemplate: config.model.chat_template },
    );
    const held = await readScoredPairs(store, inputs.data, undefined, 'eval');
    const prompts = uniquePrompts(
      held.map((pair) => [...pair.prompt_input_ids]),
      settings.num_prompts,
    );
    const reward = await openReward(settings.reward, { scratch, s3: context.s3, runtime: context.runtime });
    const samples: Sample[] = [];
    try {
      for (const [model, checkpoint] of [
        ['policy', policy],
        ['reference', reference],
      ] as const) {
        const completions = await sample(checkpoint, prompts, config, context);
        const texts = completions.map(({ prompt, completion }) => ({
          prompt: tokenizer.decode(prompt, { skipSpecialTokens: true }),
          completion: tokenizer.decode(completion, { skipSpecialTokens: true }),
        }));
        const rewards = await reward.score(texts);
        for (const [i, text] of texts.entries()) samples.push({ ...text, model, reward: rewards[i] });
        context.heartbeat?.({ stage: 'evaluate', sampled: model });
        if (model === 'policy') await scoreKl(samples, completions, policy, reference, context);
      }
    } finally {
      await reward.release();
    }
    const metrics = summarize(
      samples,
      inputs.trained.evaluation ?? {},
      prompts.length,
      settings.samples_per_prompt,
    );
    const history = await readMetricsLog(context, inputs.trained.metricsUri);
    const files: [string, string][] = [
      ['metrics.json', `${JSON.stringify(metrics, null, 2)}\n`],
      ['samples.jsonl', samples.map((s) => `${JSON.stringify(s)}\n`).join('')],
      ['report.html', renderReport(config, metrics, history, samples)],
    ];
    for (const [name, body] of files) await store.put(`${prefix}/${name}`, body);
    const evaluation: Omit<Evaluation, 'reused'> = { key, prefix, uri: store.uri(prefix), metrics };
    await store.publishManifest(prefix, {
      format: FORMAT,
      formatVersion: 1,
      files: files.map(([path, body]) => ({ path, bytes: Buffer.byteLength(body) })),
      meta: evaluation,
    });
    return { ...evaluation, reused: false };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

function uniquePrompts(prompts: number[][], limit: number): number[][] {
  const seen = new Map<string, number[]>();
  for (const prompt of prompts) if (seen.size < limit) seen.set(prompt.join(','), prompt);
  return [...seen.values()];
}

async function sample(
  model: Checkpoint,
  prompts: number[][],
  config: DpoflowConfig,
  context: StageContext,
): Promise<{ prompt: number[]; completion: number[] }[]> {
  const settings = config.evaluation;
  const generator = await Generator.create(model.spec, model.parameters, context.runtime);
  try {
    const repeated = prompts.flatMap((prompt) =>
      Array.from({ length: settings.samples_per_prompt }, () => prompt),
    );
    const completions = await generator.generate(repeated, {
      maxNewTokens: settings.max_new_tokens,
      temperature: settings.temperature,
      topK: settings.top_k,
      topP: settings.top_p,
      stopTokens: model.spec.eosTokenIds,
      seed: config.seed,
    });
    return repeated.map((prompt, i) => ({ prompt, completion: completions[i] }));
  } finally {
    await generator.release();
  }
}

/** log π and log π_ref of each policy sample, stored on the samples (the last `completions.length`). */
async function scoreKl(
  samples: Sample[],
  completions: { prompt: number[]; completion: number[] }[],
  policy: Checkpoint,
  reference: Checkpoint,
  context: StageContext,
): Promise<void> {
  const sequences = completions.map(({ prompt, completion }) => [prompt, completion] as const);
  const offset = samples.length - completions.length;
  for (const [field, model] of [
    ['logp_policy', policy],
    ['logp_reference', reference],
  ] as const) {
    const scorer = await PairScorer.create(model.spec, model.parameters, context.runtime);
    try {
      const scored = await scorer.scoreSequences(sequences);
      scored.forEach(({ logp }, i) => {
        samples[offset + i][field] = logp;
      });
    } finally {
      await scorer.release();
    }
  }
}

function summarize(
  samples: Sample[],
  preference: Record<string, number>,
  prompts: number,
  perPrompt: number,
): EvaluationMetrics {
  const mean = (values: number[]) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0);
  const of = (model: Sample['model']) => samples.filter((s) => s.model === model);
  const byPrompt = (model: Sample['model']) => {
    const groups = new Map<string, number[]>();
    for (const s of of(model)) groups.set(s.prompt, [...(groups.get(s.prompt) ?? []), s.reward]);
    return new Map([...groups].map(([prompt, rewards]) => [prompt, mean(rewards)]));
  };
  const [policyByPrompt, referenceByPrompt] = [byPrompt('policy'), byPrompt('reference')];
  const wins = [...policyByPrompt].map(([prompt, reward]) => {
    const other = referenceByPrompt.get(prompt) ?? 0;
    return reward > other ? 1 : reward === other ? 0.5 : 0;
  });
  return {
    preference,
    prompts,
    samples_per_prompt: perPrompt,
    reward_policy: mean(of('policy').map((s) => s.reward)),
    reward_reference: mean(of('reference').map((s) => s.reward)),
    win_rate: mean(wins),
    kl: mean(of('policy').map((s) => (s.logp_policy ?? 0) - (s.logp_reference ?? 0))),
  };
}

async function readMetricsLog(context: StageContext, uri: string): Promise<Record<string, number>[]> {
  const text = new TextDecoder().decode(await context.store.get(uri));
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

/** A self-contained HTML page: the numbers, training curves and reward vs KL as inline SVG. */
/** Sample completions shown per model in the report. */
const REPORT_SAMPLES = 8;

function renderReport(
  config: DpoflowConfig,
  metrics: EvaluationMetrics,
  history: Record<string, number>[],
  samples: readonly Sample[],
): string {
  const sampleRows = (['policy', 'reference'] as const)
    .flatMap((model) => samples.filter((sample) => sample.model === model).slice(0, REPORT_SAMPLES))
    .map(
      (sample) =>
        `<tr><td>${sample.model}</td><td>${escapeHtml(sample.prompt)}</td><td>${escapeHtml(sample.completion)}</td><td>${sample.reward.toFixed(3)}</td></tr>`,
    )
    .join('');
  const train = history.filter((entry) => 'loss' in entry);
  const evals = history.filter((entry) => 'eval_loss' in entry);
  const rows = Object.entries({
    ...metrics.preference,
    reward_policy: metrics.reward_policy,
    reward_reference: metrics.reward_reference,
    win_rate: metrics.win_rate,
    kl: metrics.kl,
  })
    .map(([name, value]) => `<tr><td>${escapeHtml(name)}</td><td>${Number(value).toPrecision(5)}</td></tr>`)
    .join('');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>dpoflow report: ${escapeHtml(config.name)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}td{padding:.2rem .8rem}svg{border:1px solid #ccc;margin:.5rem 0}</style>
</head><body>
<h1>${escapeHtml(config.name)}</h1>
<p>loss ${escapeHtml(config.training.loss_type)}, β ${config.training.beta}, learning rate ${config.training.learning_rate};
${metrics.prompts} held-out prompts × ${metrics.samples_per_prompt} samples, reward ${escapeHtml(config.evaluation.reward.type)}.</p>
<table>${rows}</table>
<h2>Training loss</h2>${lineChart(train.map((e) => [e.step, e.loss]))}
<h2>Held-out rewards/accuracies</h2>${lineChart(evals.map((e) => [e.step, e['eval_rewards/accuracies']]))}
<h2>Reward vs KL(π‖π_ref)</h2>${lineChart(
    [
      [0, metrics.reward_reference],
      [metrics.kl, metrics.reward_policy],
    ],
    { points: true, xLabel: 'KL', yLabel: 'reward' },
  )}
<h2>Sample completions</h2>
<table><tr><th>model</th><th>prompt</th><th>completion</th><th>reward</th></tr>${sampleRows}</table>
</body></html>
`;
}

export function lineChart(
  points: number[][],
  options: { points?: boolean; xLabel?: string; yLabel?: string } = {},
): string {
  const [width, height, pad] = [480, 200, 32];
  if (points.length === 0) return '<p>(no data)</p>';
  const xs = points.map(([x]) => x);
  const ys = points.map(([, y]) => y);
  const span = (values: number[]) => [Math.min(...values), Math.max(...values)] as const;
  const [[x0, x1], [y0, y1]] = [span(xs), span(ys)];
  const sx = (x: number) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
  const sy = (y: number) => height - pad - ((y - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
  const path = points.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
  const dots = options.points
    ? points.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="4"/>`).join('')
    : '';
  return `<svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">
<path d="${path}" fill="none" stroke="#2563eb" stroke-width="2"/>${dots}
<text x="${pad}" y="${height - 8}" font-size="11">${escapeHtml(options.xLabel ?? 'step')} ${x0.toPrecision(3)} … ${x1.toPrecision(3)}</text>
<text x="4" y="14" font-size="11">${escapeHtml(options.yLabel ?? '')} ${y0.toPrecision(3)} … ${y1.toPrecision(3)}</text>
</svg>`;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}
