// Our tokenizers against Python (test/fixtures/tokenizers, made by make_fixtures.py): for 226 strings — unicode,
// whitespace runs, special tokens inside text, empty and long strings — the same ids and decodings as the
// `tokenizers` library running each tokenizer.json as written, and as transformers 5's AutoTokenizer, for a
// GPT-2-style byte-level BPE, Llama-style BPEs with byte fallback (legacy normalizer, and Metaspace) and the
// byte-level tokenizer dpoflow writes for tiny models. Then the loader's files, special tokens and errors.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { byteLevelVocabSize, writeByteLevelTokenizer } from '../../text/byte-level-tokenizer.ts';
import { loadTokenizer, type TextTokenizer } from '../../text/tokenizer.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'tokenizers');
const names = ['gpt2-bpe', 'llama-bpe', 'llama-metaspace', 'byte-level'] as const;

interface Outputs {
  ids: number[][];
  ids_special: number[][];
  decoded: string[];
  decoded_skip_special: string[];
}
type Key = keyof Outputs;
const keys: Key[] = ['ids', 'ids_special', 'decoded', 'decoded_skip_special'];
const expected = JSON.parse(readFileSync(join(fixtures, 'expected.json'), 'utf8')) as {
  strings: string[];
} & Record<
  (typeof names)[number],
  Outputs & {
    transformers: {
      class: string;
      vocab_size: number;
      special_ids: Record<'bos' | 'eos' | 'pad' | 'unk', number | null>;
      differs: { [K in Key]: Record<string, Outputs[K][number]> };
    };
  }
>;

/** Our outputs for every fixture string, by key. */
function outputs(tokenizer: TextTokenizer): Outputs {
  const ids = expected.strings.map((text) => tokenizer.encode(text, { addSpecialTokens: false }));
  const idsSpecial = expected.strings.map((text) => tokenizer.encode(text));
  return {
    ids,
    ids_special: idsSpecial,
    decoded: ids.map((row) => tokenizer.decode(row)),
    decoded_skip_special: idsSpecial.map((row) => tokenizer.decode(row, { skipSpecialTokens: true })),
  };
}

/** "key: string" for each string whose output differs from the reference. */
function mismatches(ours: Outputs, reference: (key: Key, i: number) => unknown): string[] {
  return keys.flatMap((key) =>
    expected.strings.flatMap((text, i) =>
      JSON.stringify(ours[key][i]) === JSON.stringify(reference(key, i))
        ? []
        : [`${key}: ${JSON.stringify(text)}`],
    ),
  );
}

describe('tokenizer parity with Python', () => {
  for (const name of names) {
    it(`${name}: tokenizer.json as the tokenizers library runs it, ${expected.strings.length} strings`, async () => {
      const ours = outputs(await loadTokenizer(join(fixtures, name), { followTokenizerClass: false }));
      const found = mismatches(ours, (key, i) => expected[name][key][i]);
      assert.deepEqual(found, [], `${found.length} mismatches`);
    });

    it(`${name}: as transformers' AutoTokenizer (${expected[name].transformers.class}) loads it`, async () => {
      const reference = expected[name].transformers;
      const tokenizer = await loadTokenizer(join(fixtures, name));
      const found = mismatches(
        outputs(tokenizer),
        (key, i) => reference.differs[key][i] ?? expected[name][key][i],
      );
      assert.deepEqual(found, [], `${found.length} mismatches`);
      assert.equal(tokenizer.vocabSize, reference.vocab_size);
      const { bos, eos, pad, unk } = reference.special_ids;
      assert.deepEqual(
        [tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.padTokenId, tokenizer.unkTokenId],
        [bos, eos, pad, unk].map((id) => id ?? undefined),
      );
    });
  }

  it('Llama: transformers 5 differs from the legacy tokenizer.json, and we follow it', () => {
    // The fixture keeps this honest: if transformers stopped rebuilding Llama's pipeline, differs would be empty.
    const differs = expected['llama-bpe'].transformers.differs.ids;
    const at = expected.strings.indexOf('<s> inside </s> text');
    assert.ok(Object.keys(differs).length >= 5);
    assert.ok(String(at) in differs, 'no "▁" after <s> under transformers 5');
  });
});

describe('tokenizer files', () => {
  async function scratch(t: TestContext): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'dpoflow-tokenizer-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  it('the byte-level factory writes the committed fixture, byte for byte', async (t) => {
    const dir = await scratch(t);
    await writeByteLevelTokenizer(dir);
    for (const file of ['tokenizer.json', 'tokenizer_config.json'])
      assert.equal(
        await readFile(join(dir, file), 'utf8'),
        await readFile(join(fixtures, 'byte-level', file), 'utf8'),
        `${file} differs from test/fixtures/tokenizers/byte-level: rerun make_fixtures.py`,
      );
    const tokenizer = await loadTokenizer(dir);
    assert.equal(tokenizer.vocabSize, byteLevelVocabSize);
    assert.deepEqual(tokenizer.encode('hé'), [256, ...Buffer.from('hé')]);
    assert.deepEqual(tokenizer.encode('hé', { addSpecialTokens: false }), [...Buffer.from('hé')]);
    assert.equal(tokenizer.addsBos, true);
    assert.deepEqual(tokenizer.encode('a<|eos|>', { addSpecialTokens: false }), [97, 257]);
  });

  it('whether encoding adds BOS comes from the post-processor, not add_bos_token (as transformers 5)', async () => {
    const [gpt2, llama] = await Promise.all(
      ['gpt2-bpe', 'llama-bpe'].map((name) => loadTokenizer(join(fixtures, name))),
    );
    assert.equal(gpt2.addsBos, false); // bos_token set, post-processor ByteLevel
    assert.equal(llama.addsBos, true);
    assert.equal(llama.encode('Hello')[0], llama.bosTokenId);
  });

  it('chat_template.jinja takes priority over the config, an override over both; special_tokens_map fills gaps', async (t) => {
    const dir = await scratch(t);
    await writeByteLevelTokenizer(dir);
    const config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    delete config.eos_token;
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    await writeFile(
      join(dir, 'special_tokens_map.json'),
      JSON.stringify({ eos_token: { content: '<|eos|>' } }),
    );
    await writeFile(join(dir, 'chat_template.jinja'), '{{ messages[0].content }}{{ eos_token }}');
    const messages = [{ role: 'user', content: 'hi' }];
    const fromFile = await loadTokenizer(dir);
    assert.equal(fromFile.eosTokenId, 257);
    assert.equal(fromFile.applyChatTemplate(messages), 'hi<|eos|>');
    const overridden = await loadTokenizer(dir, { chatTemplate: '[{{ messages[0].role }}]' });
    assert.equal(overridden.applyChatTemplate(messages), '[user]');
    assert.equal(fromFile.applyChatTemplate(messages, { template: '{{ bos_token }}' }), '<|bos|>');
  });

  it('errors name the file and the problem', async (t) => {
    const dir = await scratch(t);
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: cannot read \(ENOENT\)/);
    await writeFile(join(dir, 'tokenizer.json'), '{ nope');
    await assert.rejects(loadTokenizer(dir), /\/tokenizer\.json: invalid JSON/);
    await writeFile(join(dir, 'tokenizer.json'), '[1, 2]');
    await assert.rejects(loadTokenizer(dir), /\/tokenizer\.json: expected a JSON object/);
    await writeFile(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: no "model" object/);
    const gpt2 = JSON.parse(await readFile(join(fixtures, 'gpt2-bpe', 'tokenizer.json'), 'utf8'));
    await writeFile(
      join(dir, 'tokenizer.json'),
      JSON.stringify({ ...gpt2, model: { ...gpt2.model, type: 'WordLevel' } }),
    );
    await assert.rejects(
      loadTokenizer(dir),
      /tokenizer\.json: model\.type "WordLevel" is not supported \(BPE, Unigram, WordPiece\)/,
    );
    await writeFile(
      join(dir, 'tokenizer.json'),
      JSON.stringify({ ...gpt2, pre_tokenizer: { type: 'Bogus' } }),
    );
    await assert.rejects(
      loadTokenizer(dir),
      /tokenizer\.json: unsupported tokenizer \(Unknown PreTokenizer type: Bogus\)/,
    );
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(gpt2));
    await writeFile(join(dir, 'tokenizer_config.json'), '{"bos_token": ');
    await assert.rejects(loadTokenizer(dir), /\/tokenizer_config\.json: invalid JSON/);
    await writeFile(join(dir, 'tokenizer_config.json'), '{"pad_token": "<pad>"}');
    await assert.rejects(
      loadTokenizer(dir),
      /pad_token "<pad>" from tokenizer_config\.json is not in the vocabulary/,
    );
    await writeFile(join(dir, 'tokenizer_config.json'), '{}');
    const tokenizer = await loadTokenizer(dir);
    assert.throws(
      () => tokenizer.decode([5, 100000]),
      /tokenizer\.json: cannot decode id 100000: not in the vocabulary/,
    );
    assert.throws(
      () => tokenizer.applyChatTemplate([{ role: 'user', content: 'x' }]),
      /tokenizer\.json: no chat template/,
    );
    assert.equal(tokenizer.decode([]), '');
  });
});
