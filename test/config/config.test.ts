// Tests of dpoflow's config: examples parse, defaults, environment overrides, one exact message per kind of
// invalid config, syntax errors with positions, and the digest.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, type ConfigIssue } from '../../config/errors.ts';
import { configDigest, loadConfig, parseConfig, redactSecrets } from '../../config/load.ts';
import { configJsonSchema, type DpoflowConfigInput, type JsonSchema } from '../../config/schema.ts';

const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;
const CWD = '/runs/here';
const NO_ENV = {};

const minimal = (): DpoflowConfigInput => ({
  model: { uri: 'models/tiny' },
  dataset: { train: 'data/pairs.jsonl' },
});

/** `minimal()` with `section` replaced by `patch` merged over it. */
function withSection(section: string, patch: Record<string, unknown>): Record<string, unknown> {
  const config: Record<string, unknown> = minimal();
  config[section] = { ...(config[section] as object), ...patch };
  return config;
}

function issuesOf(action: () => unknown): ConfigIssue[] {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return [...error.issues];
  }
  assert.fail('expected the config to be rejected');
}

function assertRejected(raw: unknown, expected: Array<[path: string, message: string]>, env = NO_ENV): void {
  const issues = issuesOf(() => parseConfig(raw, { env, cwd: CWD }));
  assert.deepEqual(
    issues.map((issue) => [issue.path, issue.message]),
    expected,
  );
}

describe('examples', () => {
  test('every example file parses', async () => {
    const files = (await readdir(EXAMPLES)).filter((file) => /\.(ya?ml|json)$/.test(file));
    assert.ok(files.length >= 4, `expected at least 4 examples, found ${files}`);
    for (const file of files) {
      const config = await loadConfig(join(EXAMPLES, file), { env: NO_ENV, cwd: CWD });
      assert.match(config.name, /^[a-z-]+$/, file);
    }
  });

  test('each example sets what it is named for', async () => {
    const load = (file: string) => loadConfig(join(EXAMPLES, file), { env: NO_ENV, cwd: CWD });
    const tiny = await load('tiny-local.yaml');
    assert.equal(tiny.runtime.execution_provider, 'cpu');
    assert.equal(tiny.store.uri, 'file:///tmp/dpoflow/artifacts');
    assert.equal(tiny.model.uri, 'file:///runs/here/models/tiny-llama');
    assert.equal(tiny.training.learning_rate, 5e-6);

    const minio = await load('minio.yaml');
    assert.equal(minio.store.uri, 's3://dpoflow/runs');
    assert.deepEqual(minio.store.s3, {
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      force_path_style: true,
    });

    const gpu = await load('gpu.yaml');
    assert.equal(gpu.runtime.execution_provider, 'cuda');
    assert.equal(gpu.temporal.task_queues.gpu, 'dpoflow-gpu-h100');
    assert.equal(gpu.training.loss_type, 'robust');

    const lora = await load('lora.json');
    assert.deepEqual(lora.training.lora, {
      r: 16,
      lora_alpha: 32,
      lora_dropout: 0,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
    });
    assert.equal(lora.training.rpo_alpha, 1);
  });
});

describe('defaults', () => {
  test('a config naming only the model and the training data gets every documented default', () => {
    const config = parseConfig(minimal(), { env: NO_ENV, cwd: CWD });
    assert.equal(config.name, 'dpoflow');
    assert.equal(config.seed, 42);
    assert.deepEqual(config.model, { uri: 'file:///runs/here/models/tiny', dtype: 'float32' });
    assert.deepEqual(config.dataset, {
      train: 'file:///runs/here/data/pairs.jsonl',
      format: 'auto',
      file_type: 'auto',
      eval_fraction: 0.05,
      split_seed: 42,
      max_invalid_rows: 0,
      dedupe: true,
    });
    assert.deepEqual(config.training, {
      beta: 0.1,
      loss_type: 'sigmoid',
      label_smoothing: 0,
      simpo_gamma: 0.5,
      learning_rate: 1e-6,
      per_device_train_batch_size: 8,
      per_device_eval_batch_size: 8,
      gradient_accumulation_steps: 1,
      num_train_epochs: 3,
      max_steps: -1,
      warmup_steps: 0,
      warmup_ratio: 0,
      lr_scheduler_type: 'linear',
      weight_decay: 0,
      adam_beta1: 0.9,
      adam_beta2: 0.999,
      adam_epsilon: 1e-8,
      max_grad_norm: 1,
      optim: 'adamw',
      logging_steps: 10,
      eval_steps: 100,
      save_steps: 500,
      max_length: 1024,
      max_prompt_length: 512,
      truncation_mode: 'keep_end',
      precompute_ref_log_probs: true,
      length_bucketing: true,
      shuffle: true,
    });
    assert.deepEqual(config.runtime, {
      execution_provider: 'cpu',
      device_id: 0,
      intra_op_threads: 0,
      graph_optimization_level: 'all',
    });
    assert.deepEqual(config.evaluation.reward, { type: 'sentiment' });
    assert.equal(config.stages.sft.enabled, false);
    assert.equal(config.stages.generate_preferences.enabled, false);
    assert.deepEqual(config.store, {
      uri: 'file:///runs/here/.dpoflow/artifacts',
      s3: { region: 'us-east-1', force_path_style: false },
    });
    assert.deepEqual(config.temporal, {
      address: 'localhost:7233',
      namespace: 'default',
      task_queues: { cpu: 'dpoflow-cpu', gpu: 'dpoflow-gpu' },
      reference_shards_per_activity: 8,
      training_heartbeat_timeout_s: 120,
    });
  });

  test('a lora section gets its own defaults; union branches get theirs', () => {
    const config = parseConfig(
      {
        ...minimal(),
        training: { lora: {} },
        evaluation: { reward: { type: 'http', url: 'http://judge:8000/score' } },
      },
      { env: NO_ENV, cwd: CWD },
    );
    assert.deepEqual(config.training.lora, {
      r: 8,
      lora_alpha: 16,
      lora_dropout: 0,
      target_modules: ['q_proj', 'v_proj'],
    });
    assert.deepEqual(config.evaluation.reward, {
      type: 'http',
      url: 'http://judge:8000/score',
      timeout_ms: 10_000,
    });
  });

  test('every location becomes a URI: s3:// and file:// kept, local paths absolute against cwd', () => {
    const config = parseConfig(
      {
        model: { uri: 's3://models/tiny', reference: 'file:///models/ref', tokenizer: '../tok' },
        dataset: { train: '/abs/train.jsonl', eval: 'eval dir/e.jsonl' },
        evaluation: { reward: { type: 'onnx', uri: 'rewards/sentiment' } },
        stages: { sft: { enabled: true, dataset: 'sft.jsonl' } },
        store: { uri: 'artifacts' },
      },
      { env: NO_ENV, cwd: CWD },
    );
    assert.deepEqual(config.model, {
      uri: 's3://models/tiny',
      reference: 'file:///models/ref',
      tokenizer: 'file:///runs/tok',
      dtype: 'float32',
    });
    assert.equal(config.dataset.train, 'file:///abs/train.jsonl');
    assert.equal(config.dataset.eval, 'file:///runs/here/eval%20dir/e.jsonl');
    assert.deepEqual(config.evaluation.reward, { type: 'onnx', uri: 'file:///runs/here/rewards/sentiment' });
    assert.equal(config.stages.sft.dataset, 'file:///runs/here/sft.jsonl');
    assert.equal(config.store.uri, 'file:///runs/here/artifacts');
  });

  test('every setting in the schema carries a description (the one-line doc of the reference)', () => {
    const undocumented: string[] = [];
    const visit = (node: JsonSchema, path: string) => {
      if (path && typeof node.description !== 'string') undocumented.push(path);
      for (const [key, child] of Object.entries(node.properties ?? {}))
        visit(child as JsonSchema, path ? `${path}.${key}` : key);
      for (const branch of node.oneOf ?? []) visit(branch, path);
    };
    visit(configJsonSchema(), '');
    assert.deepEqual(undocumented, []);
  });
});

describe('environment overrides', () => {
  const parse = (env: Record<string, string>, raw: unknown = minimal()) =>
    parseConfig(raw, { env, cwd: CWD });

  test('DPOFLOW__ variables set nested settings, parsed as JSON when they parse', () => {
    const config = parse({
      DPOFLOW__TRAINING__BETA: '0.2',
      DPOFLOW__TRAINING__PRECOMPUTE_REF_LOG_PROBS: 'false',
      DPOFLOW__TRAINING__LORA__TARGET_MODULES: '["c_attn"]',
      DPOFLOW__TEMPORAL__TASK_QUEUES__GPU: 'gpu-queue-7',
      DPOFLOW__RUNTIME__EXECUTION_PROVIDER: 'cuda',
      dpoflow__training__max_steps: '30',
      UNRELATED: '1',
    });
    assert.equal(config.training.beta, 0.2);
    assert.equal(config.training.precompute_ref_log_probs, false);
    assert.deepEqual(config.training.lora?.target_modules, ['c_attn']);
    assert.equal(config.training.lora?.r, 8);
    assert.equal(config.temporal.task_queues.gpu, 'gpu-queue-7');
    assert.equal(config.runtime.execution_provider, 'cuda');
    assert.equal(config.training.max_steps, 30);
  });

  test('the environment wins over the file; null removes a setting; empty variables are ignored', () => {
    const raw = { ...minimal(), training: { beta: 0.5, lora: { r: 4 } }, temporal: { namespace: 'file-ns' } };
    const config = parse(
      { DPOFLOW__TRAINING__BETA: '0.3', DPOFLOW__TRAINING__LORA: 'null', DPOFLOW__TEMPORAL__NAMESPACE: '' },
      raw,
    );
    assert.equal(config.training.beta, 0.3);
    assert.equal(config.training.lora, undefined);
    assert.equal(config.temporal.namespace, 'file-ns');
  });

  test('well-known variables apply, below DPOFLOW__ ones; the S3-specific endpoint beats the generic one', () => {
    const config = parse({
      TEMPORAL_ADDRESS: 'temporal.prod:7233',
      TEMPORAL_NAMESPACE: '123',
      DPOFLOW_STORE_URI: 's3://bucket/runs',
      AWS_ENDPOINT_URL: 'http://generic:9000',
      AWS_ENDPOINT_URL_S3: 'http://minio:9000',
      AWS_REGION: 'eu-central-1',
    });
    assert.equal(config.temporal.address, 'temporal.prod:7233');
    assert.equal(config.temporal.namespace, '123', 'well-known values stay strings');
    assert.equal(config.store.uri, 's3://bucket/runs');
    assert.equal(config.store.s3.endpoint, 'http://minio:9000');
    assert.equal(config.store.s3.region, 'eu-central-1');

    const both = parse({ TEMPORAL_ADDRESS: 'a:1', DPOFLOW__TEMPORAL__ADDRESS: 'b:2' });
    assert.equal(both.temporal.address, 'b:2');
  });

  test('a deeper variable wins over a shallower one that sets the same object', () => {
    const config = parse({
      DPOFLOW__TRAINING__LORA__R: '32',
      DPOFLOW__TRAINING__LORA: '{"r": 4, "lora_alpha": 8}',
    });
    assert.equal(config.training.lora?.r, 32);
    assert.equal(config.training.lora?.lora_alpha, 8);
  });

  test('problems in overridden settings name the variable', () => {
    assertRejected(
      minimal(),
      [['training.beta', 'expected a number > 0, received "high" (set by DPOFLOW__TRAINING__BETA)']],
      {
        DPOFLOW__TRAINING__BETA: 'high',
      },
    );
    assertRejected(
      minimal(),
      [['training.bta', 'unknown key (did you mean beta?) (set by DPOFLOW__TRAINING__BTA)']],
      { DPOFLOW__TRAINING__BTA: '0.2' },
    );
    assertRejected(
      minimal(),
      [['model.uri', 'cannot apply DPOFLOW__MODEL__URI__PATH: the setting is "models/tiny", not an object']],
      { DPOFLOW__MODEL__URI__PATH: 'x' },
    );
    assertRejected(
      minimal(),
      [['training.lora.r', 'expected an integer >= 1, received 0 (set by DPOFLOW__TRAINING__LORA__R)']],
      { DPOFLOW__TRAINING__LORA: '{"lora_alpha": 8}', DPOFLOW__TRAINING__LORA__R: '0' },
    );
  });
});

describe('invalid configs: one precise message each', () => {
  const cases: Array<[title: string, raw: unknown, expected: Array<[string, string]>]> = [
    [
      'non-numeric beta',
      withSection('training', { beta: 'abc' }),
      [['training.beta', 'expected a number > 0, received "abc"']],
    ],
    [
      'beta = 0',
      withSection('training', { beta: 0 }),
      [['training.beta', 'expected a number > 0, received 0']],
    ],
    [
      'negative beta',
      withSection('training', { beta: -0.1 }),
      [['training.beta', 'expected a number > 0, received -0.1']],
    ],
    [
      'unknown loss_type',
      withSection('training', { loss_type: 'dpo' }),
      [['training.loss_type', 'expected one of sigmoid | robust | hinge | ipo | simpo, received "dpo"']],
    ],
    [
      'misspelled key',
      withSection('training', { learning_rat: 1e-6 }),
      [['training.learning_rat', 'unknown key (did you mean learning_rate?)']],
    ],
    [
      'key in the wrong section',
      withSection('training', { max_new_tokens: 64 }),
      [
        [
          'training.max_new_tokens',
          'unknown key (it belongs under evaluation or stages.generate_preferences)',
        ],
      ],
    ],
    [
      'unrelated unknown key',
      withSection('runtime', { use_gpu: true }),
      [
        [
          'runtime.use_gpu',
          'unknown key (expected one of execution_provider, device_id, intra_op_threads, graph_optimization_level)',
        ],
      ],
    ],
    [
      'warmup_steps and warmup_ratio both set',
      withSection('training', { warmup_steps: 150, warmup_ratio: 0.1 }),
      [
        [
          'training.warmup_ratio',
          'cannot be combined with warmup_steps = 150 (set one of them to 0), received 0.1',
        ],
      ],
    ],
    [
      'warmup with the constant schedule',
      withSection('training', { warmup_steps: 10, lr_scheduler_type: 'constant' }),
      [
        [
          'training.warmup_steps',
          'expected 0 with lr_scheduler_type "constant", which has no warmup (use constant_with_warmup), received 10',
        ],
      ],
    ],
    [
      'max_prompt_length >= max_length',
      withSection('training', { max_length: 512, max_prompt_length: 512 }),
      [['training.max_prompt_length', 'expected less than max_length (512), received 512']],
    ],
    [
      'negative batch size',
      withSection('training', { per_device_train_batch_size: -4 }),
      [['training.per_device_train_batch_size', 'expected an integer >= 1, received -4']],
    ],
    [
      'non-integer steps',
      withSection('training', { max_steps: 10.5 }),
      [['training.max_steps', 'expected an integer >= -1, received 10.5']],
    ],
    [
      'max_steps = 0',
      withSection('training', { max_steps: 0 }),
      [['training.max_steps', 'expected -1 (train for num_train_epochs) or an integer >= 1, received 0']],
    ],
    [
      'label_smoothing out of range',
      withSection('training', { label_smoothing: 0.5 }),
      [['training.label_smoothing', 'expected a number >= 0 and < 0.5, received 0.5']],
    ],
    [
      'label_smoothing with a loss that has none',
      withSection('training', { label_smoothing: 0.1, loss_type: 'ipo' }),
      [
        [
          'training.label_smoothing',
          'expected 0 with loss_type "ipo" (label smoothing applies to sigmoid | robust), received 0.1',
        ],
      ],
    ],
    [
      'bad store URI scheme',
      withSection('store', { uri: 'gs://bucket/runs' }),
      [
        [
          'store.uri',
          'expected an s3://bucket/key, file:///absolute/path or local path, received "gs://bucket/runs"',
        ],
      ],
    ],
    [
      'missing dataset.train',
      { model: { uri: 'm' }, dataset: { format: 'standard' } },
      [
        [
          'dataset.train',
          'missing required setting — preference pairs to train on: JSONL, JSON array or Parquet (replaced by the generated pairs when stages.generate_preferences runs)',
        ],
      ],
    ],
    [
      'missing model section',
      { dataset: { train: 'pairs.jsonl' } },
      [
        [
          'model',
          'missing required setting — policy and reference models; read from files or S3, never downloaded from a hub',
        ],
      ],
    ],
    [
      'bad reward type',
      withSection('evaluation', { reward: { type: 'bert' } }),
      [['evaluation.reward.type', 'expected one of sentiment | onnx | http, received "bert"']],
    ],
    [
      'reward given as a string',
      withSection('evaluation', { reward: 'sentiment' }),
      [['evaluation.reward', 'expected an object with type sentiment | onnx | http, received "sentiment"']],
    ],
    [
      'onnx reward without its uri, with an unknown key',
      withSection('evaluation', { reward: { type: 'onnx', url: 'x' } }),
      [
        [
          'evaluation.reward.uri',
          'missing required setting — directory with the reward model (model.onnx and its tokenizer)',
        ],
        ['evaluation.reward.url', 'unknown key (did you mean uri?)'],
      ],
    ],
    [
      'http reward with a non-http URL',
      withSection('evaluation', { reward: { type: 'http', url: 'ftp://judge/score' } }),
      [['evaluation.reward.url', 'expected an http:// or https:// URL, received "ftp://judge/score"']],
    ],
    [
      'top_p = 0',
      withSection('evaluation', { top_p: 0 }),
      [['evaluation.top_p', 'expected a number > 0 and <= 1, received 0']],
    ],
    [
      'empty lora target_modules',
      withSection('training', { lora: { target_modules: [] } }),
      [['training.lora.target_modules', 'expected a list of strings with at least 1 item, received []']],
    ],
    [
      'non-string target module',
      withSection('training', { lora: { target_modules: ['q_proj', 7] } }),
      [['training.lora.target_modules[1]', 'expected a non-empty string, received 7']],
    ],
    [
      'enabled sft stage without data',
      { ...minimal(), stages: { sft: { enabled: true } } },
      [['stages.sft.dataset', 'missing, required because stages.sft.enabled is true']],
    ],
    [
      'half of the S3 credentials',
      withSection('store', { s3: { access_key_id: 'AKIA' } }),
      [
        [
          'store.s3.secret_access_key',
          'missing, required because access_key_id is set (set both or neither)',
        ],
      ],
    ],
    [
      'Temporal address with a scheme',
      withSection('temporal', { address: 'http://localhost:7233' }),
      [['temporal.address', 'expected host:port, received "http://localhost:7233"']],
    ],
    [
      'boolean given as a string',
      withSection('dataset', { dedupe: 'yes' }),
      [['dataset.dedupe', 'expected true or false, received "yes"']],
    ],
    [
      'a list instead of a mapping',
      [1, 2],
      [['', 'expected an object (key: value mapping), received [1,2]']],
    ],
  ];

  for (const [title, raw, expected] of cases) {
    test(title, () => assertRejected(raw, expected));
  }

  test('every problem is reported at once, in one message', () => {
    const raw = {
      ...minimal(),
      training: { beta: 'abc', loss_type: 'dpo' },
      runtime: { execution_provider: 'tpu' },
    };
    const error = (() => {
      try {
        parseConfig(raw, { env: NO_ENV, cwd: CWD });
      } catch (caught) {
        return caught as ConfigError;
      }
    })();
    assert.ok(error instanceof ConfigError);
    assert.equal(
      error.message,
      [
        'invalid dpoflow config (3 problems):',
        '  training.beta: expected a number > 0, received "abc"',
        '  training.loss_type: expected one of sigmoid | robust | hinge | ipo | simpo, received "dpo"',
        '  runtime.execution_provider: expected one of cpu | cuda, received "tpu"',
      ].join('\n'),
    );
  });
});

describe('files', () => {
  let directory: string;
  before(async () => {
    directory = await mkdtemp(join(tmpdir(), 'dpoflow-config-'));
  });
  after(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  async function write(name: string, text: string): Promise<string> {
    const path = join(directory, name);
    await writeFile(path, text);
    return path;
  }

  async function rejection(path: string): Promise<ConfigError> {
    const error = await loadConfig(path, { env: NO_ENV, cwd: CWD }).then(
      () => assert.fail(`expected ${path} to be rejected`),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error;
  }

  test('YAML 1.2 scalars: 1e-6 is a number, yes is a string rather than a boolean', async () => {
    const path = await write(
      'scalars.yaml',
      'model: {uri: m}\ndataset: {train: t}\ntraining: {learning_rate: 1e-6}\n',
    );
    assert.equal((await loadConfig(path, { env: NO_ENV, cwd: CWD })).training.learning_rate, 1e-6);
    const yes = await write('yes.yaml', 'model: {uri: m}\ndataset: {train: t, dedupe: yes}\n');
    assert.deepEqual((await rejection(yes)).issues, [
      { path: 'dataset.dedupe', message: 'expected true or false, received "yes"' },
    ]);
  });

  test('an invalid file: the message starts with its path', async () => {
    const path = await write(
      'invalid.yaml',
      'model:\n  uri: m\ndataset:\n  train: t\ntraining:\n  beta: abc\n',
    );
    const error = await rejection(path);
    assert.equal(
      error.message,
      `${path}: invalid dpoflow config (1 problem):\n  training.beta: expected a number > 0, received "abc"`,
    );
    assert.equal(error.source, path);
  });

  test('a YAML syntax error gives file:line:col', async () => {
    const path = await write('broken.yaml', 'model:\n  uri: m\ntraining:\n  beta: 0.1: 2\n');
    const error = await rejection(path);
    assert.equal(
      error.message,
      `${path}:4:9: invalid YAML: Nested mappings are not allowed in compact mappings`,
    );
    assert.deepEqual(error.issues, [
      {
        path: '',
        message: 'invalid YAML: Nested mappings are not allowed in compact mappings',
        line: 4,
        column: 9,
      },
    ]);
  });

  test('duplicate YAML keys are syntax errors, not silent overrides', async () => {
    const path = await write('duplicate.yaml', 'model:\n  uri: m\ntraining:\n  beta: 0.1\n  beta: 0.2\n');
    const error = await rejection(path);
    assert.equal(error.message, `${path}:5:3: invalid YAML: Map keys must be unique`);
  });

  test('a JSON syntax error gives file:line:col', async () => {
    const path = await write('broken.json', '{\n  "model": {"uri": "m"},\n}\n');
    const error = await rejection(path);
    assert.equal(error.message, `${path}:3:1: invalid JSON: Expected double-quoted property name`);
  });

  test('an unknown extension and a missing file are ConfigErrors naming the file', async () => {
    const toml = await write('config.toml', 'beta = 0.1\n');
    assert.equal(
      (await rejection(toml)).message,
      `${toml}: invalid dpoflow config (1 problem):\n  (root): unsupported file extension ".toml" (expected .yaml, .yml or .json)`,
    );
    const missing = join(directory, 'absent.yaml');
    assert.match(
      (await rejection(missing)).message,
      /^.*absent\.yaml: invalid dpoflow config \(1 problem\):\n {2}\(root\): cannot read the file \(ENOENT/,
    );
  });

  test('an empty YAML file reports the required sections', async () => {
    const path = await write('empty.yaml', '');
    assert.deepEqual(
      (await rejection(path)).issues.map((issue) => issue.path),
      ['model', 'dataset'],
    );
  });
});

describe('configDigest', () => {
  const parse = (raw: unknown) => parseConfig(raw, { env: NO_ENV, cwd: CWD });

  test('is a sha256 hex string independent of key order at every level', () => {
    const forward = parse({
      name: 'run',
      model: { uri: 'm', dtype: 'float32' },
      dataset: { train: 't', format: 'standard' },
      training: { beta: 0.2, lora: { r: 4, target_modules: ['a', 'b'] } },
    });
    const backward = parse({
      training: { lora: { target_modules: ['a', 'b'], r: 4 }, beta: 0.2 },
      dataset: { format: 'standard', train: 't' },
      model: { dtype: 'float32', uri: 'm' },
      name: 'run',
    });
    assert.match(configDigest(forward), /^[0-9a-f]{64}$/);
    assert.equal(configDigest(forward), configDigest(backward));
  });

  test('changes with any setting, list order included', () => {
    const base = configDigest(parse(minimal()));
    assert.notEqual(configDigest(parse(withSection('training', { beta: 0.11 }))), base);
    const modules = (target_modules: string[]) =>
      configDigest(parse(withSection('training', { lora: { target_modules } })));
    assert.notEqual(modules(['a', 'b']), modules(['b', 'a']));
  });

  test('ignores credentials, which redactSecrets removes', () => {
    const plain = parse(minimal());
    const withKeys = parse(
      withSection('store', { s3: { access_key_id: 'AKIA', secret_access_key: 'secret' } }),
    );
    assert.equal(configDigest(withKeys), configDigest(plain));
    assert.deepEqual(redactSecrets(withKeys).store.s3, { region: 'us-east-1', force_path_style: false });
    assert.equal(withKeys.store.s3.secret_access_key, 'secret', 'redactSecrets leaves its input alone');
  });
});
