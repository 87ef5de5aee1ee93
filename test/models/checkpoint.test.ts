// Loading Hugging Face directories: what loads, what round-trips, and the precise error for each bad input.

import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { hostTensor } from '../../engine/dtype.ts';
import { weightShapes } from '../../engine/models/causal-lm.ts';
import { loadCheckpoint, saveCheckpoint } from '../../engine/models/checkpoint.ts';
import { tinyConfig, tinyParameters, writeTinyModel } from '../../engine/models/tiny.ts';
import { maxAbsDiff, saveParameters } from '../../engine/parameters.ts';
import { loadTokenizer } from '../../text/tokenizer.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'models');

async function copyOf(t: TestContext, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dpoflow-checkpoint-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(join(fixtures, name), join(dir, name), { recursive: true });
  return join(dir, name);
}

describe('checkpoints', () => {
  it('loads each fixture with its architecture and every expected weight', async () => {
    for (const [name, architecture] of [
      ['gpt2', 'GPT2LMHeadModel'],
      ['llama', 'LlamaForCausalLM'],
      ['qwen2', 'Qwen2ForCausalLM'],
    ]) {
      const checkpoint = await loadCheckpoint(join(fixtures, name));
      assert.equal(checkpoint.spec.architecture, architecture);
      assert.deepEqual(
        [...checkpoint.parameters.keys()].sort(),
        [...weightShapes(checkpoint.spec).keys()].sort(),
      );
      assert.equal(checkpoint.generationConfig?.eos_token_id, 2);
    }
    const llama = await loadCheckpoint(join(fixtures, 'llama'));
    assert.ok(llama.spec.family === 'llama' && llama.spec.config.rope_scaling?.factor === 8);
    assert.ok(llama.spec.family === 'llama' && llama.spec.config.num_key_value_heads === 2);
  });

  it('tiny model factory: each family writes a directory that loads back with its seeded weights and tokenizer', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'dpoflow-tiny-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    for (const family of ['gpt2', 'llama', 'qwen2'] as const) {
      await writeTinyModel(join(root, family), { family, seed: 4 });
      const loaded = await loadCheckpoint(join(root, family));
      assert.equal(maxAbsDiff(loaded.parameters, tinyParameters(tinyConfig({ family }), 4)), 0);
      assert.equal((await loadTokenizer(join(root, family))).eosTokenId, loaded.spec.eosTokenIds[0]);
    }
    const llama = await loadCheckpoint(join(root, 'llama'));
    assert.ok(
      llama.spec.family === 'llama' && llama.spec.config.num_key_value_heads === 2,
      'grouped-query attention',
    );
  });

  it('save → load round-trips identical weights', async (t) => {
    const source = await loadCheckpoint(join(fixtures, 'qwen2'));
    const dir = join(await copyOf(t, 'qwen2'), '..', 'saved');
    await saveCheckpoint(dir, source);
    const again = await loadCheckpoint(dir);
    assert.equal(maxAbsDiff(source.parameters, again.parameters), 0);
    assert.deepEqual(again.rawConfig, source.rawConfig);
  });

  it('names the problem: missing config, unknown architecture, truncated weights, wrong shape, missing tensor', async (t) => {
    const dir = await copyOf(t, 'gpt2');
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));

    await writeFile(
      join(dir, 'config.json'),
      JSON.stringify({ ...config, architectures: ['MistralForCausalLM'] }),
    );
    await assert.rejects(
      loadCheckpoint(dir),
      /architecture "MistralForCausalLM" is not supported \(supported: GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM\)/,
    );
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, n_embd: 'wide' }));
    await assert.rejects(loadCheckpoint(dir), /config\.json \(GPT2LMHeadModel\): n_embd: /);
    await rm(join(dir, 'config.json'));
    await assert.rejects(loadCheckpoint(dir), /config\.json: cannot read \(ENOENT\)/);
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));

    const weights = join(dir, 'model.safetensors');
    const original = await loadCheckpoint(dir);
    const reshaped = new Map(original.parameters);
    reshaped.set(
      'transformer.h.0.attn.c_attn.weight',
      hostTensor('float32', [32, 64], new Float32Array(32 * 64)),
    );
    await saveParameters(weights, reshaped);
    await assert.rejects(
      loadCheckpoint(dir),
      /model\.safetensors: transformer\.h\.0\.attn\.c_attn\.weight has shape \[32, 64\], expected \[32, 96\]/,
    );
    const without = new Map(original.parameters);
    without.delete('transformer.ln_f.bias');
    await saveParameters(weights, without);
    await assert.rejects(loadCheckpoint(dir), /missing tensors transformer\.ln_f\.bias/);
    await saveParameters(weights, original.parameters);
    await truncate(weights, 1000);
    await assert.rejects(loadCheckpoint(dir), /model\.safetensors/);
    await rm(weights);
    await assert.rejects(
      loadCheckpoint(dir),
      /no weights \(looked for model\.safetensors and model\.safetensors\.index\.json\)/,
    );
  });

  it('reads sharded checkpoints through model.safetensors.index.json', async (t) => {
    const dir = await copyOf(t, 'llama');
    const { parameters } = await loadCheckpoint(dir);
    const names = [...parameters.keys()];
    const halves = [names.slice(0, 7), names.slice(7)];
    const weightMap: Record<string, string> = {};
    for (const [i, half] of halves.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await saveParameters(join(dir, file), new Map(half.map((name) => [name, parameters.get(name)!])));
      for (const name of half) weightMap[name] = file;
    }
    await rm(join(dir, 'model.safetensors'));
    await writeFile(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    assert.equal(maxAbsDiff((await loadCheckpoint(dir)).parameters, parameters), 0);
    await rm(join(dir, 'model-00002-of-00002.safetensors'));
    await assert.rejects(loadCheckpoint(dir), /model-00002-of-00002\.safetensors/);
  });
});
