// Our tokenizers against Python's `tokenizers` (test/fixtures/tokenizers, made by make_fixtures.py): the same
// ids for 217 strings — unicode, whitespace runs, special tokens inside text — for a GPT-2-style byte-level
// BPE, a Llama-style BPE with byte fallback, and the byte-level tokenizer dpoflow writes for tiny models.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { byteLevelVocabSize, writeByteLevelTokenizer } from '../../text/byte-level-tokenizer.ts';
import { loadTokenizer } from '../../text/tokenizer.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'tokenizers');
const expected = JSON.parse(readFileSync(join(fixtures, 'expected.json'), 'utf8')) as {
  strings: string[];
} & Record<string, { with_special: number[][]; without_special: number[][]; decoded: string[] }>;

describe('tokenizer ids match Python tokenizers', () => {
  for (const name of ['gpt2-bpe', 'llama-bpe', 'byte-level']) {
    it(`${name}: ${expected.strings.length} strings, with and without special tokens, and decoding`, async () => {
      const tokenizer = await loadTokenizer(join(fixtures, name));
      const reference = expected[name];
      const mismatches: string[] = [];
      expected.strings.forEach((text, i) => {
        const withSpecial = tokenizer.encode(text);
        const without = tokenizer.encode(text, { addSpecialTokens: false });
        if (JSON.stringify(withSpecial) !== JSON.stringify(reference.with_special[i]))
          mismatches.push(`${JSON.stringify(text)} (special)`);
        if (JSON.stringify(without) !== JSON.stringify(reference.without_special[i]))
          mismatches.push(JSON.stringify(text));
        if (tokenizer.decode(without) !== reference.decoded[i])
          mismatches.push(`${JSON.stringify(text)} (decode)`);
      });
      assert.deepEqual(mismatches, [], `${mismatches.length} mismatches`);
    });
  }
});

describe('tokenizer files', () => {
  it('the byte-level tokenizer encodes any text byte by byte, with specials and a chat template', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'dpoflow-tokenizer-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeByteLevelTokenizer(dir);
    const tokenizer = await loadTokenizer(dir);
    assert.equal(tokenizer.vocabSize, byteLevelVocabSize);
    assert.deepEqual(tokenizer.encode('hé'), [...Buffer.from('hé')]);
    assert.deepEqual([tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.padTokenId], [256, 257, 258]);
    assert.equal(
      tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }),
      '<|user|>hi<|eos|><|assistant|>',
    );
  });

  it('names the file for a missing or invalid tokenizer.json and a missing chat template', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'dpoflow-tokenizer-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: cannot read \(ENOENT\)/);
    await writeFile(join(dir, 'tokenizer.json'), '{ nope');
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: invalid JSON/);
    const gpt2 = await loadTokenizer(join(fixtures, 'gpt2-bpe'));
    assert.throws(() => gpt2.applyChatTemplate([{ role: 'user', content: 'x' }]), /no chat_template/);
  });
});
