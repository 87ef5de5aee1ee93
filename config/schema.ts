// dpoflow's pipeline configuration: one zod schema per section, each setting with its default and a one-line
// description. The single source of truth for the types, validation, the README reference and OpenAPI.
// No transforms and no Node built-ins here, so z.toJSONSchema works and workflows may import the types.

import { z } from 'zod';
import { formatValue } from './errors.ts';

/** s3://bucket[/key], file:///absolute/path, or a local path (no scheme) that the loader resolves against cwd. */
export const LOCATION_PATTERN =
  /^(s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?|file:\/\/\/.*|(?![a-zA-Z][a-zA-Z0-9+.-]*:\/\/).+)$/;

function location(description: string) {
  return z
    .string()
    .regex(LOCATION_PATTERN, { error: 'expected an s3://bucket/key, file:///absolute/path or local path' })
    .describe(description);
}

function httpUrl(description: string) {
  return z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }).describe(description);
}

const positiveInt = () => z.int().gte(1);
const nonNegativeInt = () => z.int().gte(0);

export const modelSchema = z
  .strictObject({
    uri: location('policy model: a Hugging Face model directory (config.json, tokenizer, weights)'),
    reference: location('reference model π_ref, frozen; defaults to the policy model (uri)').optional(),
    tokenizer: location(
      'tokenizer directory (tokenizer.json, tokenizer_config.json); defaults to uri',
    ).optional(),
    chat_template: z
      .string()
      .min(1)
      .optional()
      .describe("Jinja chat template replacing tokenizer_config.json's, for conversational data"),
    dtype: z
      .enum(['float32', 'float16'])
      .default('float32')
      .describe('dtype the policy parameters are held in'),
  })
  .describe('policy and reference models; read from files or S3, never downloaded from a hub');

export const datasetSchema = z
  .strictObject({
    train: location(
      'preference pairs to train on: JSONL, JSON array or Parquet (replaced by the generated pairs when stages.generate_preferences runs)',
    ),
    eval: location('held-out preference pairs; when absent, eval_fraction of train is held out').optional(),
    format: z
      .enum(['auto', 'standard', 'implicit_prompt', 'conversational', 'pretokenized'])
      .default('auto')
      .describe('row format (TRL names); auto detects it from the first valid row'),
    file_type: z
      .enum(['auto', 'jsonl', 'json', 'parquet'])
      .default('auto')
      .describe('file encoding; auto picks it from the extension'),
    eval_fraction: z
      .number()
      .gte(0)
      .lt(1)
      .default(0.05)
      .describe('share of train held out for evaluation when eval is absent (0 = no evaluation split)'),
    split_seed: nonNegativeInt()
      .default(42)
      .describe('seed of the train/eval split, independent of training'),
    max_invalid_rows: nonNegativeInt()
      .default(0)
      .describe('rows that may fail validation before the dataset is rejected (0 = any invalid row fails)'),
    dedupe: z
      .boolean()
      .default(true)
      .describe('drop exact duplicate pairs (same prompt, chosen and rejected)'),
  })
  .describe('preference data and how it is read and split');

export const LOSS_TYPES = ['sigmoid', 'robust', 'hinge', 'ipo', 'simpo'] as const;
/** Losses whose formula has a label-flip rate ε (DPO-REFERENCE.md); the others ignore label_smoothing. */
const LABEL_SMOOTHING_LOSSES: readonly string[] = ['sigmoid', 'robust'];

export const loraSchema = z
  .strictObject({
    r: positiveInt().default(8).describe('rank of the low-rank update'),
    lora_alpha: z
      .number()
      .gt(0)
      .default(16)
      .describe('scaling numerator: the update is scaled by lora_alpha / r'),
    lora_dropout: z.number().gte(0).lt(1).default(0).describe('dropout on the adapter input'),
    target_modules: z
      .array(z.string().min(1))
      .min(1)
      .default(['q_proj', 'v_proj'])
      .describe('names of the linear layers that get adapters (matched against parameter names)'),
  })
  .describe('train low-rank adapters instead of all weights; absent = full fine-tuning');

export const trainingSchema = z
  .strictObject({
    beta: z.number().gt(0).default(0.1).describe('β: strength of the KL penalty towards the reference model'),
    loss_type: z.enum(LOSS_TYPES).default('sigmoid').describe('preference loss (DPO-REFERENCE.md, Losses)'),
    label_smoothing: z
      .number()
      .gte(0)
      .lt(0.5)
      .default(0)
      .describe('ε: assumed rate of flipped preference labels (sigmoid = cDPO, robust)'),
    simpo_gamma: z.number().gte(0).default(0.5).describe('γ: target reward margin of the simpo loss'),
    rpo_alpha: z
      .number()
      .gte(0)
      .optional()
      .describe('α: weight of the NLL term on chosen responses (RPO); absent = no NLL term'),
    learning_rate: z.number().gt(0).default(1e-6).describe('peak learning rate (the paper uses 1e-6)'),
    per_device_train_batch_size: positiveInt().default(8).describe('pairs per training micro-batch'),
    per_device_eval_batch_size: positiveInt().default(8).describe('pairs per evaluation batch'),
    gradient_accumulation_steps: positiveInt()
      .default(1)
      .describe('micro-batches per optimizer step; metrics are averaged over them'),
    num_train_epochs: z
      .number()
      .gt(0)
      .default(3)
      .describe('passes over the training pairs (may be fractional)'),
    max_steps: z
      .int()
      .gte(-1)
      .refine((steps) => steps !== 0, {
        error: (issue) =>
          `expected -1 (train for num_train_epochs) or an integer >= 1, received ${formatValue(issue.input)}`,
      })
      .default(-1)
      .describe('optimizer steps to train; -1 = derive from num_train_epochs'),
    warmup_steps: nonNegativeInt().default(0).describe('steps of linear warmup from 0 to learning_rate'),
    warmup_ratio: z
      .number()
      .gte(0)
      .lt(1)
      .default(0)
      .describe('warmup as a share of the total steps; use either this or warmup_steps'),
    lr_scheduler_type: z
      .enum(['constant', 'linear', 'cosine', 'constant_with_warmup'])
      .default('linear')
      .describe('learning-rate schedule after warmup'),
    weight_decay: z.number().gte(0).default(0).describe('decoupled weight decay (AdamW)'),
    adam_beta1: z.number().gte(0).lt(1).default(0.9).describe('AdamW first-moment decay'),
    adam_beta2: z.number().gte(0).lt(1).default(0.999).describe('AdamW second-moment decay'),
    adam_epsilon: z.number().gt(0).default(1e-8).describe('AdamW denominator epsilon'),
    max_grad_norm: z
      .number()
      .gte(0)
      .default(1)
      .describe('clip the global gradient norm to this (0 disables)'),
    optim: z.enum(['adamw', 'sgd']).default('adamw').describe('optimizer'),
    logging_steps: positiveInt().default(10).describe('optimizer steps between logged metrics'),
    eval_steps: positiveInt().default(100).describe('optimizer steps between evaluations on the eval pairs'),
    save_steps: positiveInt().default(500).describe('optimizer steps between checkpoints'),
    max_length: positiveInt().default(1024).describe('maximum tokens of prompt + response'),
    max_prompt_length: positiveInt()
      .default(512)
      .describe('maximum prompt tokens, applied before max_length'),
    truncation_mode: z
      .enum(['keep_end', 'keep_start'])
      .default('keep_end')
      .describe('keep_end cuts the start of long prompts; keep_start cuts their end'),
    precompute_ref_log_probs: z
      .boolean()
      .default(true)
      .describe(
        'compute reference log-probs once before training, so training holds only the policy (dpoflow always does; false is accepted for TRL configs)',
      ),
    length_bucketing: z
      .boolean()
      .default(true)
      .describe('batch pairs of similar length together to reduce padding'),
    shuffle: z.boolean().default(true).describe('shuffle pairs each epoch with seed; false keeps file order'),
    lora: loraSchema.optional(),
  })
  .superRefine((training, context) => {
    if (training.warmup_steps > 0 && training.warmup_ratio > 0) {
      context.addIssue({
        code: 'custom',
        path: ['warmup_ratio'],
        message: `cannot be combined with warmup_steps = ${training.warmup_steps} (set one of them to 0), received ${formatValue(training.warmup_ratio)}`,
      });
    } else if (training.lr_scheduler_type === 'constant') {
      for (const key of ['warmup_steps', 'warmup_ratio'] as const) {
        if (training[key] > 0) {
          context.addIssue({
            code: 'custom',
            path: [key],
            message: `expected 0 with lr_scheduler_type "constant", which has no warmup (use constant_with_warmup), received ${formatValue(training[key])}`,
          });
        }
      }
    }
    if (training.max_prompt_length >= training.max_length) {
      context.addIssue({
        code: 'custom',
        path: ['max_prompt_length'],
        message: `expected less than max_length (${training.max_length}), received ${formatValue(training.max_prompt_length)}`,
      });
    }
    if (training.label_smoothing > 0 && !LABEL_SMOOTHING_LOSSES.includes(training.loss_type)) {
      context.addIssue({
        code: 'custom',
        path: ['label_smoothing'],
        message: `expected 0 with loss_type "${training.loss_type}" (label smoothing applies to ${LABEL_SMOOTHING_LOSSES.join(' | ')}), received ${formatValue(training.label_smoothing)}`,
      });
    }
  })
  .describe('DPO hyperparameters, named as in TRL DPOConfig / Hugging Face TrainingArguments');

export const runtimeSchema = z
  .strictObject({
    execution_provider: z
      .enum(['cpu', 'cuda'])
      .default('cpu')
      .describe('onnxruntime execution provider for training and generation'),
    device_id: nonNegativeInt().default(0).describe('CUDA device index (cuda only)'),
    intra_op_threads: nonNegativeInt()
      .default(0)
      .describe('threads per onnxruntime operator (0 = runtime default)'),
    graph_optimization_level: z
      .enum(['disabled', 'basic', 'extended', 'layout', 'all'])
      .default('all')
      .describe('onnxruntime graph optimization level'),
  })
  .describe('where and how the ONNX graphs run');

export const rewardSchema = z
  .discriminatedUnion('type', [
    z
      .strictObject({
        type: z
          .literal('sentiment')
          .describe(
            "built-in sentiment word lexicon, a weight-free stand-in for the paper's IMDb classifier",
          ),
      })
      .describe('reward = (positive − negative sentiment words) / (all sentiment words) of the completion'),
    z
      .strictObject({
        type: z.literal('onnx').describe('reward model exported to ONNX'),
        uri: location('directory with the reward model (model.onnx and its tokenizer)'),
      })
      .describe('reward = scalar output of an ONNX sequence-classification model'),
    z
      .strictObject({
        type: z.literal('http').describe('remote reward service'),
        url: httpUrl('endpoint receiving {prompt, completion} pairs as JSON and answering rewards'),
        timeout_ms: positiveInt().default(10_000).describe('time limit per request, in milliseconds'),
      })
      .describe('reward = answer of an HTTP service'),
  ])
  .describe('ground-truth reward that scores generations (and labels generated pairs)');

export const evaluationSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('run the evaluation stage after training'),
    num_prompts: positiveInt().default(64).describe('held-out prompts to generate from'),
    max_new_tokens: positiveInt().default(48).describe('tokens generated per completion at most'),
    temperature: z.number().gte(0).default(1).describe('sampling temperature (0 = greedy)'),
    top_k: nonNegativeInt().default(0).describe('sample from the k most likely tokens (0 = all)'),
    top_p: z.number().gt(0).lte(1).default(1).describe('nucleus sampling mass (1 = all)'),
    samples_per_prompt: positiveInt().default(4).describe('completions sampled per prompt'),
    reward: rewardSchema.prefault({ type: 'sentiment' }),
  })
  .describe('reward and KL(π‖π_ref) of the trained policy, and held-out preference accuracy');

export const sftStageSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe('fine-tune the model on chosen responses before DPO'),
    dataset: location(
      'SFT data: prompt/completion rows, or preference pairs whose chosen side is used',
    ).optional(),
    learning_rate: z.number().gt(0).default(1e-5).describe('SFT learning rate'),
    num_train_epochs: z.number().gt(0).default(1).describe('SFT passes over its dataset'),
  })
  .superRefine((sft, context) => {
    if (sft.enabled && sft.dataset === undefined) {
      context.addIssue({
        code: 'custom',
        path: ['dataset'],
        message: 'missing, required because stages.sft.enabled is true',
      });
    }
  })
  .describe('optional supervised fine-tuning stage');

export const generatePreferencesStageSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        'sample completions, label pairs with evaluation.reward and train on them instead of dataset.train',
      ),
    prompts: location('prompts to sample from (JSONL/JSON/Parquet rows with a prompt field)').optional(),
    completions_per_prompt: z
      .int()
      .gte(2)
      .default(4)
      .describe('completions sampled per prompt; pairs are formed among them'),
    max_new_tokens: positiveInt().default(48).describe('tokens generated per completion at most'),
    temperature: z.number().gt(0).default(1).describe('sampling temperature'),
  })
  .superRefine((generate, context) => {
    if (generate.enabled && generate.prompts === undefined) {
      context.addIssue({
        code: 'custom',
        path: ['prompts'],
        message: 'missing, required because stages.generate_preferences.enabled is true',
      });
    }
  })
  .describe('optional stage building preference pairs the way the paper does for IMDb');

export const stagesSchema = z
  .strictObject({
    sft: sftStageSchema.prefault({}),
    generate_preferences: generatePreferencesStageSchema.prefault({}),
  })
  .describe('optional stages that run before DPO');

export const storeSchema = z
  .strictObject({
    uri: location('artifact root: s3://bucket/prefix or file:///absolute/path').default('.dpoflow/artifacts'),
    s3: z
      .strictObject({
        endpoint: httpUrl('S3 API endpoint, e.g. MinIO; absent = AWS').optional(),
        region: z.string().min(1).default('us-east-1').describe('S3 region'),
        force_path_style: z
          .boolean()
          .default(false)
          .describe('address buckets as endpoint/bucket (MinIO) instead of bucket.endpoint'),
        access_key_id: z
          .string()
          .min(1)
          .optional()
          .describe('prefer AWS_ACCESS_KEY_ID in the environment; never saved with artifacts'),
        secret_access_key: z
          .string()
          .min(1)
          .optional()
          .describe('prefer AWS_SECRET_ACCESS_KEY in the environment; never saved with artifacts'),
      })
      .superRefine((s3, context) => {
        if ((s3.access_key_id === undefined) !== (s3.secret_access_key === undefined)) {
          const [missing, present] =
            s3.access_key_id === undefined
              ? ['access_key_id', 'secret_access_key']
              : ['secret_access_key', 'access_key_id'];
          context.addIssue({
            code: 'custom',
            path: [missing],
            message: `missing, required because ${present} is set (set both or neither)`,
          });
        }
      })
      .prefault({})
      .describe('S3 client settings, used when uri is s3://'),
  })
  .describe('where artifacts (datasets, caches, checkpoints, reports) are written');

export const temporalSchema = z
  .strictObject({
    address: z
      .string()
      .regex(/^[^\s/]+:\d{1,5}$/, { error: 'expected host:port' })
      .default('localhost:7233')
      .describe('Temporal frontend host:port'),
    namespace: z.string().min(1).default('default').describe('Temporal namespace'),
    task_queues: z
      .strictObject({
        cpu: z.string().min(1).default('dpoflow-cpu').describe('queue of activities that need no GPU'),
        gpu: z.string().min(1).default('dpoflow-gpu').describe('queue of activities run by GPU workers'),
      })
      .prefault({})
      .describe('task queues the workers poll'),
    reference_shards_per_activity: positiveInt()
      .default(8)
      .describe(
        'data shards (2048 pairs each) per reference-scoring activity; more shards fan out across workers',
      ),
    training_heartbeat_timeout_s: positiveInt()
      .default(120)
      .describe('seconds without a heartbeat after which a training attempt counts as lost and is retried'),
  })
  .describe('Temporal connection');

export const notifySchema = z
  .strictObject({
    webhook_url: httpUrl(
      "receives the run's outcome as JSON when it ends (completed, failed or cancelled), signed with HMAC-SHA256",
    ).optional(),
  })
  .describe(
    "notifications; the HMAC key comes from the workers' DPOFLOW_WEBHOOK_SECRET, never from the config",
  );

export const configSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, {
        error: 'expected letters, digits, ".", "_" or "-" (at most 100)',
      })
      .default('dpoflow')
      .describe('run name, used in workflow ids and artifact paths'),
    seed: nonNegativeInt().default(42).describe('seed for initialisation, shuffling, dropout and sampling'),
    model: modelSchema,
    dataset: datasetSchema,
    training: trainingSchema.prefault({}),
    runtime: runtimeSchema.prefault({}),
    evaluation: evaluationSchema.prefault({}),
    stages: stagesSchema.prefault({}),
    store: storeSchema.prefault({}),
    temporal: temporalSchema.prefault({}),
    notify: notifySchema.prefault({}),
  })
  .describe('dpoflow pipeline configuration');

/** A validated config: every default filled. */
export type DpoflowConfig = z.output<typeof configSchema>;
/** What a config file may contain: defaulted settings optional. */
export type DpoflowConfigInput = z.input<typeof configSchema>;
export type ModelConfig = DpoflowConfig['model'];
export type DatasetConfig = DpoflowConfig['dataset'];
export type TrainingConfig = DpoflowConfig['training'];
export type LoraConfig = NonNullable<TrainingConfig['lora']>;
export type LossType = TrainingConfig['loss_type'];
export type RuntimeConfig = DpoflowConfig['runtime'];
export type EvaluationConfig = DpoflowConfig['evaluation'];
export type RewardConfig = EvaluationConfig['reward'];
export type StagesConfig = DpoflowConfig['stages'];
export type StoreConfig = DpoflowConfig['store'];
export type TemporalConfig = DpoflowConfig['temporal'];

/** A JSON Schema node (draft 2020-12) as zod emits it. */
export type JsonSchema = z.core.JSONSchema.JSONSchema;

let inputJsonSchema: JsonSchema | undefined;
/** JSON Schema of what a config file may contain (defaults shown, defaulted fields not required). */
export function configJsonSchema(): JsonSchema {
  inputJsonSchema ??= z.toJSONSchema(configSchema, { io: 'input' });
  return inputJsonSchema;
}
