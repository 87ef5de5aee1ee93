// Hugging Face directories and config.json: what loads (the transformers-made fixtures, Hub naming, bf16), what
// round-trips (tiny factory, save → load, sharded), and the precise error for each bad input.

import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { hostTensor } from '../../engine/dtype.ts';
import { weightShapes } from '../../engine/models/causal-lm.ts';
import { loadCheckpoint, saveCheckpoint } from '../../engine/models/checkpoint.ts';
import { parseModelConfig } from '../../engine/models/hf-config.ts';
import { tinyConfig, tinyParameters, writeTinyModel } from '../../engine/models/tiny.ts';
import { maxAbsDiff, type ParameterSet, saveParameters } from '../../engine/parameters.ts';
import { readSafetensorsFile, writeSafetensorsFile } from '../../engine/safetensors.ts';
import { loadTokenizer } from '../../text/tokenizer.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'models');

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dpoflow-checkpoint-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function copyOf(t: TestContext, name: string): Promise<string> {
  const dir = join(await tempDir(t), name);
  await cp(join(fixtures, name), dir, { recursive: true });
  return dir;
}

const shapesOf = (parameters: ParameterSet) =>
  Object.fromEntries([...parameters].map(([name, tensor]) => [name, [...tensor.dims]]));

async function shardIndex(dir: string): Promise<Record<string, string>> {
  return JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8')).weight_map;
}

describe('config.json', () => {
  const gpt2 = { architectures: ['GPT2LMHeadModel'], vocab_size: 259, n_positions: 64, n_embd: 32 };
  const llama = {
    architectures: ['LlamaForCausalLM'],
    vocab_size: 259,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
  };

  it('normalizes each family, taking the architecture from model_type when architectures is absent', () => {
    const spec = parseModelConfig({
      model_type: 'gpt2',
      ...gpt2,
      architectures: undefined,
      n_layer: 2,
      n_head: 4,
    });
    assert.equal(spec.architecture, 'GPT2LMHeadModel');
    assert.deepEqual(spec.family === 'gpt2' && spec.config.layer_norm_epsilon, 1e-5);
    const qwen = parseModelConfig({ ...llama, architectures: ['Qwen2ForCausalLM'], eos_token_id: [7, 8] });
    assert.ok(qwen.family === 'llama');
    assert.deepEqual(
      [qwen.config.qkv_bias, qwen.config.head_dim, qwen.config.rope_theta, qwen.config.tie_word_embeddings],
      [true, 8, 10000, false],
    );
    assert.deepEqual(qwen.eosTokenIds, [7, 8]);
  });

  it('reads llama3 rope scaling under rope_scaling (rope_type or the legacy type) and rope_parameters', () => {
    const scaling = {
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 16,
    };
    const expected = { ...scaling };
    for (const fields of [
      { rope_theta: 500000, rope_scaling: { rope_type: 'llama3', ...scaling } },
      { rope_theta: 500000, rope_scaling: { type: 'llama3', ...scaling } },
      { rope_parameters: { rope_type: 'llama3', rope_theta: 500000, ...scaling } },
    ]) {
      const spec = parseModelConfig({ ...llama, ...fields });
      assert.ok(spec.family === 'llama');
      assert.deepEqual([spec.config.rope_theta, spec.config.rope_scaling], [500000, expected]);
    }
    assert.throws(
      () => parseModelConfig({ ...llama, rope_scaling: { rope_type: 'llama3', factor: 8 } }),
      /llama3 rope scaling needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings/,
    );
  });

  it('rejects what the graphs do not compute, naming the field', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { ...llama, architectures: ['MistralForCausalLM'] },
        /^ModelConfigError: config\.json: architecture "MistralForCausalLM" is not supported \(supported: GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM\)$/,
      ],
      [{ ...llama, rope_scaling: { rope_type: 'yarn', factor: 4 } }, /rope_scaling\.rope_type: /],
      [{ ...llama, attention_bias: true }, /\(LlamaForCausalLM\): attention_bias: /],
      [{ ...llama, architectures: ['Qwen2ForCausalLM'], use_sliding_window: true }, /use_sliding_window: /],
      [
        {
          ...llama,
          architectures: ['Qwen2ForCausalLM'],
          layer_types: ['full_attention', 'sliding_attention'],
        },
        /layer_types\.1: /,
      ],
      [
        { ...llama, num_key_value_heads: 3 },
        /num_attention_heads 4 is not a multiple of num_key_value_heads 3/,
      ],
      [
        { ...gpt2, n_layer: 2, n_head: 4, n_inner: 100 },
        /n_inner 100 is not supported \(only null or 4 · n_embd = 128\)/,
      ],
      [{ ...gpt2, n_layer: 2, n_head: 4, activation_function: 'relu' }, /activation_function: /],
      [{ ...gpt2, n_head: 4 }, /config\.json \(GPT2LMHeadModel\): n_layer: /],
    ];
    for (const [config, message] of cases) assert.throws(() => parseModelConfig(config), message);
  });
});

describe('checkpoints', () => {
  it('loads each fixture with its architecture, weight names and shapes', async () => {
    const gpt2 = await loadCheckpoint(join(fixtures, 'gpt2'));
    const llama = await loadCheckpoint(join(fixtures, 'llama'));
    const qwen2 = await loadCheckpoint(join(fixtures, 'qwen2'));
    for (const [checkpoint, architecture] of [
      [gpt2, 'GPT2LMHeadModel'],
      [llama, 'LlamaForCausalLM'],
      [qwen2, 'Qwen2ForCausalLM'],
    ] as const) {
      assert.equal(checkpoint.spec.architecture, architecture);
      assert.deepEqual(shapesOf(checkpoint.parameters), Object.fromEntries(weightShapes(checkpoint.spec)));
      assert.ok([...checkpoint.parameters.values()].every((tensor) => tensor.dtype === 'float32'));
      assert.deepEqual(checkpoint.spec.eosTokenIds, [257]);
      assert.equal(checkpoint.generationConfig?.eos_token_id, 257);
      assert.deepEqual(
        checkpoint.files.map((file) => basename(file)),
        ['model.safetensors'],
      );
    }
    // GPT-2: Conv1D layout [in, out], lm_head tied (absent).
    assert.deepEqual(gpt2.parameters.get('transformer.h.0.attn.c_attn.weight')?.dims, [32, 96]);
    assert.deepEqual(gpt2.parameters.get('transformer.h.1.mlp.c_fc.weight')?.dims, [32, 128]);
    assert.equal(gpt2.parameters.has('lm_head.weight'), false);
    // Llama: Linear layout [out, in], 2 kv heads of width 8, untied lm_head, llama3 rope.
    assert.deepEqual(llama.parameters.get('model.layers.0.self_attn.q_proj.weight')?.dims, [32, 32]);
    assert.deepEqual(llama.parameters.get('model.layers.0.self_attn.k_proj.weight')?.dims, [16, 32]);
    assert.deepEqual(llama.parameters.get('lm_head.weight')?.dims, [259, 32]);
    assert.ok(llama.spec.family === 'llama' && llama.spec.config.rope_scaling?.factor === 8);
    // Qwen2: q/k/v biases (random, so non-zero), no o_proj bias, tied.
    assert.deepEqual(qwen2.parameters.get('model.layers.1.self_attn.v_proj.bias')?.dims, [16]);
    assert.ok(
      qwen2.parameters.get('model.layers.1.self_attn.v_proj.bias')!.data.some((value) => value !== 0),
    );
    assert.equal(qwen2.parameters.has('model.layers.1.self_attn.o_proj.bias'), false);
    assert.equal(qwen2.parameters.has('lm_head.weight'), false);
  });

  it('loads Hub-style GPT-2 files: no transformer. prefix, attention-mask buffers and a tied lm_head present', async (t) => {
    const dir = await copyOf(t, 'gpt2');
    const original = await loadCheckpoint(dir);
    const hubStyle: ParameterSet = new Map(
      [...original.parameters].map(([name, tensor]) => [name.replace(/^transformer\./, ''), tensor]),
    );
    hubStyle.set('h.0.attn.bias', hostTensor('float32', [1, 1, 4, 4], new Float32Array(16).fill(1)));
    hubStyle.set('h.0.attn.masked_bias', hostTensor('float32', [], Float32Array.of(-1e4)));
    hubStyle.set('lm_head.weight', original.parameters.get('transformer.wte.weight')!);
    await saveParameters(join(dir, 'model.safetensors'), hubStyle);
    const loaded = await loadCheckpoint(dir);
    assert.equal(maxAbsDiff(loaded.parameters, original.parameters), 0);
  });

  it('converts bf16 weights to float32', async (t) => {
    const dir = await copyOf(t, 'llama');
    const { tensors } = await readSafetensorsFile(join(dir, 'model.safetensors'));
    const expected: ParameterSet = new Map();
    for (const [name, stored] of tensors) {
      const bits = new Uint32Array(stored.bytes.slice().buffer);
      const halves = Uint16Array.from(bits, (word) => word >>> 16); // bf16 = the float32's top half
      tensors.set(name, { dtype: 'BF16', shape: stored.shape, bytes: new Uint8Array(halves.buffer) });
      const truncated = new Float32Array(Uint32Array.from(bits, (word) => word & 0xffff0000).buffer);
      expected.set(name, hostTensor('float32', stored.shape, truncated));
    }
    await writeSafetensorsFile(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    assert.equal(maxAbsDiff((await loadCheckpoint(dir)).parameters, expected), 0);
  });

  it('tiny model factory: each family writes a directory that loads back with its seeded weights and tokenizer', async (t) => {
    const root = await tempDir(t);
    for (const family of ['gpt2', 'llama', 'qwen2'] as const) {
      await writeTinyModel(join(root, family), { family, seed: 4 });
      const loaded = await loadCheckpoint(join(root, family));
      assert.equal(maxAbsDiff(loaded.parameters, tinyParameters(tinyConfig({ family }), 4)), 0);
      assert.equal((await loadTokenizer(join(root, family))).eosTokenId, loaded.spec.eosTokenIds[0]);
      assert.deepEqual(
        (await readdir(root)).filter((entry) => entry.startsWith('.')),
        [],
      ); // no staging left
    }
    const llama = await loadCheckpoint(join(root, 'llama'));
    assert.ok(llama.spec.family === 'llama');
    assert.deepEqual(
      [llama.spec.config.num_key_value_heads, llama.spec.config.tie_word_embeddings],
      [2, false],
      'grouped-query attention, untied',
    );
    // Seeds matter, weights are N(0, 0.02)-sized, norms are ones.
    const [a, b] = [3, 5].map((seed) => tinyParameters(tinyConfig({ family: 'llama' }), seed));
    assert.ok(maxAbsDiff(a, b) > 0.01);
    const embedding = a.get('model.embed_tokens.weight')!.data as Float32Array;
    const std = Math.sqrt(embedding.reduce((sum, value) => sum + value * value, 0) / embedding.length);
    assert.ok(Math.abs(std - 0.02) < 0.001, `embedding std ${std}`);
    assert.ok((a.get('model.norm.weight')!.data as Float32Array).every((value) => value === 1));
  });

  it('tiny model options: sizes, vocabulary, tying; impossible ones are refused', async (t) => {
    const dir = join(await tempDir(t), 'qwen2');
    await writeTinyModel(dir, {
      family: 'qwen2',
      width: 48,
      heads: 6,
      kvHeads: 3,
      layers: 1,
      vocabSize: 300,
      tied: false,
    });
    const { spec, parameters } = await loadCheckpoint(dir);
    assert.ok(spec.family === 'llama');
    assert.deepEqual(
      [
        spec.config.hidden_size,
        spec.config.num_hidden_layers,
        spec.config.num_key_value_heads,
        spec.config.vocab_size,
      ],
      [48, 1, 3, 300],
    );
    assert.deepEqual(parameters.get('lm_head.weight')?.dims, [300, 48]);
    assert.throws(() => tinyConfig({ family: 'gpt2', tied: false }), /GPT-2 ties lm_head to the embedding/);
    assert.throws(() => tinyConfig({ family: 'llama', vocabSize: 100 }), /vocabSize 100 is below .* 259/);
  });

  it('save → load round-trips identical weights and config, over an existing directory too', async (t) => {
    const source = await loadCheckpoint(join(fixtures, 'qwen2'));
    const root = await tempDir(t);
    const dir = join(root, 'saved');
    assert.deepEqual(await saveCheckpoint(dir, source), ['model.safetensors']);
    await writeFile(join(dir, 'stale.txt'), 'from before');
    await saveCheckpoint(dir, source);
    const again = await loadCheckpoint(dir);
    assert.equal(maxAbsDiff(source.parameters, again.parameters), 0);
    assert.deepEqual(again.rawConfig, source.rawConfig);
    assert.deepEqual(again.generationConfig, source.generationConfig);
    assert.deepEqual((await readdir(root)).sort(), ['saved']);
    assert.deepEqual((await readdir(dir)).sort(), [
      'config.json',
      'generation_config.json',
      'model.safetensors',
    ]);
  });

  it('saves and loads shards through model.safetensors.index.json', async (t) => {
    const source = await loadCheckpoint(join(fixtures, 'llama'));
    const dir = join(await tempDir(t), 'sharded');
    const shardBytes = 40_000;
    const files = await saveCheckpoint(dir, source, { shardBytes });
    assert.ok(files.length > 2, `${files.length} shards`);
    assert.deepEqual(files[0], `model-00001-of-${String(files.length).padStart(5, '0')}.safetensors`);
    for (const file of files) assert.ok((await stat(join(dir, file))).size < shardBytes + 2000);
    const weightMap = await shardIndex(dir);
    assert.deepEqual(Object.keys(weightMap).sort(), [...source.parameters.keys()].sort());
    assert.deepEqual([...new Set(Object.values(weightMap))], files);
    const loaded = await loadCheckpoint(dir);
    assert.equal(maxAbsDiff(loaded.parameters, source.parameters), 0);
    assert.deepEqual(
      loaded.files.map((file) => basename(file)),
      files,
    );
  });

  it('refuses to save parameters that are not the architecture’s weights', async (t) => {
    const source = await loadCheckpoint(join(fixtures, 'gpt2'));
    const dir = join(await tempDir(t), 'bad');
    const extra = new Map(source.parameters).set(
      'transformer.h.9.ln_1.weight',
      hostTensor('float32', [1], Float32Array.of(1)),
    );
    await assert.rejects(
      saveCheckpoint(dir, { ...source, parameters: extra }),
      /unexpected \[transformer\.h\.9\.ln_1\.weight\]/,
    );
    const reshaped = new Map(source.parameters).set(
      'transformer.ln_f.bias',
      hostTensor('float32', [2], new Float32Array(2)),
    );
    await assert.rejects(
      saveCheckpoint(dir, { ...source, parameters: reshaped }),
      /cannot save GPT2LMHeadModel: transformer\.ln_f\.bias has shape \[2\], expected \[32\]/,
    );
    await assert.rejects(stat(dir), { code: 'ENOENT' });
  });

  it('names the problem: missing config, unknown architecture, bad field, missing weights', async (t) => {
    const dir = await copyOf(t, 'gpt2');
    const configPath = join(dir, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8'));
    await writeFile(configPath, JSON.stringify({ ...config, architectures: ['MistralForCausalLM'] }));
    await assert.rejects(
      loadCheckpoint(dir),
      new RegExp(
        `^CheckpointError: ${configPath}: architecture "MistralForCausalLM" is not supported \\(supported: GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM\\)$`,
      ),
    );
    await writeFile(configPath, JSON.stringify({ ...config, n_embd: 'wide' }));
    await assert.rejects(loadCheckpoint(dir), /config\.json \(GPT2LMHeadModel\): n_embd: /);
    await writeFile(configPath, '{"architectures": [');
    await assert.rejects(loadCheckpoint(dir), /config\.json: invalid JSON/);
    await rm(configPath);
    await assert.rejects(loadCheckpoint(dir), /config\.json: cannot read \(ENOENT\)/);
    await writeFile(configPath, JSON.stringify(config));
    await rm(join(dir, 'model.safetensors'));
    await assert.rejects(
      loadCheckpoint(dir),
      /no weights \(looked for model\.safetensors and model\.safetensors\.index\.json\)/,
    );
  });

  it('names the file and tensor: truncated, wrong shape, missing, unexpected', async (t) => {
    const dir = await copyOf(t, 'gpt2');
    const weights = join(dir, 'model.safetensors');
    const original = await loadCheckpoint(dir);
    const variant = async (edit: (parameters: ParameterSet) => void) => {
      const parameters = new Map(original.parameters);
      edit(parameters);
      await saveParameters(weights, parameters);
    };
    await variant((p) =>
      p.set('transformer.h.0.attn.c_attn.weight', hostTensor('float32', [32, 64], new Float32Array(32 * 64))),
    );
    await assert.rejects(
      loadCheckpoint(dir),
      /model\.safetensors: transformer\.h\.0\.attn\.c_attn\.weight has shape \[32, 64\], expected \[32, 96\]/,
    );
    await variant((p) => p.delete('transformer.ln_f.bias'));
    await assert.rejects(
      loadCheckpoint(dir),
      /missing tensors transformer\.ln_f\.bias \(read model\.safetensors\)/,
    );
    await variant((p) =>
      p.set('transformer.h.0.attn.c_attn.lora_A', hostTensor('float32', [1], new Float32Array(1))),
    );
    await assert.rejects(
      loadCheckpoint(dir),
      /model\.safetensors: unexpected tensor transformer\.h\.0\.attn\.c_attn\.lora_A for GPT2LMHeadModel/,
    );
    await variant(() => {});
    await truncate(weights, (await stat(weights)).size - 100);
    await assert.rejects(
      loadCheckpoint(dir),
      /model\.safetensors: truncated: the header describes \d+ data bytes but only \d+ follow it/,
    );
  });

  it('names the index and shard: missing shard, tensor not in its shard, tensor in two shards', async (t) => {
    const dir = join(await tempDir(t), 'sharded');
    const source = await loadCheckpoint(join(fixtures, 'llama'));
    const files = await saveCheckpoint(dir, source, { shardBytes: 40_000 });
    const indexPath = join(dir, 'model.safetensors.index.json');
    const weightMap = await shardIndex(dir);
    const [first, second] = files;
    const inSecond = Object.keys(weightMap).find((name) => weightMap[name] === second)!;

    await writeFile(indexPath, JSON.stringify({ weight_map: { ...weightMap, [inSecond]: first } }));
    await assert.rejects(
      loadCheckpoint(dir),
      new RegExp(
        `model\\.safetensors\\.index\\.json: weight_map puts ${inSecond} in .*${first}, which lacks it`,
      ),
    );
    const firstContents = await readSafetensorsFile(join(dir, first));
    const secondContents = await readSafetensorsFile(join(dir, second));
    firstContents.tensors.set(inSecond, secondContents.tensors.get(inSecond)!);
    await writeSafetensorsFile(join(dir, first), firstContents.tensors, { format: 'pt' });
    await assert.rejects(loadCheckpoint(dir), new RegExp(`${second}: ${inSecond} is also in .*${first}`));

    await writeFile(indexPath, JSON.stringify({ weight_map: weightMap }));
    await rm(join(dir, second));
    await assert.rejects(
      loadCheckpoint(dir),
      new RegExp(
        `model\\.safetensors\\.index\\.json: shard ${second} \\(listed for [\\w.]+\\) does not exist`,
      ),
    );
    await writeFile(indexPath, JSON.stringify({ metadata: {} }));
    await assert.rejects(loadCheckpoint(dir), /index\.json: weight_map is missing/);
  });
});
