// DPO tokenization on the byte-level tokenizer (ids are bytes; <|bos|> 256, <|eos|> 257), where every expected
// id can be written by hand, plus a BPE tokenizer for merges across the prompt/response boundary.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { writeByteLevelTokenizer } from '../../text/byte-level-tokenizer.ts';
import { parsePreferenceRow } from '../../text/preference-rows.ts';
import { type TruncationSettings, tokenizePair } from '../../text/preference-tokenizer.ts';
import { loadTokenizer, type TextTokenizer } from '../../text/tokenizer.ts';

const [BOS, EOS] = [256, 257];
const bytes = (text: string) => [...Buffer.from(text)];
const roomy: TruncationSettings = { max_length: 512, max_prompt_length: 256, truncation_mode: 'keep_end' };

describe('DPO tokenization', () => {
  let tokenizer: TextTokenizer;
  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dpoflow-pairs-'));
    await writeByteLevelTokenizer(dir);
    tokenizer = await loadTokenizer(dir);
    await rm(dir, { recursive: true });
  });
  const tokenize = (raw: unknown, settings = roomy) =>
    tokenizePair(tokenizer, parsePreferenceRow(raw, 7), 7, settings);

  it('standard rows: BOS once before the prompt, EOS after each response', () => {
    assert.deepEqual(tokenize({ prompt: 'ab', chosen: 'c', rejected: 'de' }), {
      kind: 'ok',
      prompt_input_ids: [BOS, ...bytes('ab')],
      chosen_input_ids: [...bytes('c'), EOS],
      rejected_input_ids: [...bytes('de'), EOS],
      warnings: [],
      truncated: false,
    });
  });

  it('never doubles a BOS or EOS already in the text', () => {
    const pair = tokenize({ prompt: '<|bos|>ab', chosen: 'c<|eos|>', rejected: 'd' });
    assert.ok(pair.kind === 'ok');
    assert.deepEqual(pair.prompt_input_ids, [BOS, ...bytes('ab')]);
    assert.deepEqual(pair.chosen_input_ids, [...bytes('c'), EOS]);
  });

  it('implicit prompt: the longest common prefix of chosen and rejected', () => {
    const pair = tokenize({ chosen: 'Q: 2+2? A: 4', rejected: 'Q: 2+2? A: 5' });
    assert.ok(pair.kind === 'ok');
    assert.deepEqual(pair.prompt_input_ids, [BOS, ...bytes('Q: 2+2? A: ')]);
    assert.deepEqual(
      [pair.chosen_input_ids, pair.rejected_input_ids],
      [
        [...bytes('4'), EOS],
        [...bytes('5'), EOS],
      ],
    );
  });

  it('conversational rows use the chat template with the generation prompt; explicit or implicit prompt', () => {
    const user = { role: 'user', content: 'hi' };
    const expected = {
      prompt: [BOS, ...bytes('<|user|>hi'), EOS, ...bytes('<|assistant|>')],
      chosen: [...bytes('hello'), EOS],
    };
    for (const raw of [
      {
        prompt: [user],
        chosen: [{ role: 'assistant', content: 'hello' }],
        rejected: [{ role: 'assistant', content: 'go' }],
      },
      {
        chosen: [user, { role: 'assistant', content: 'hello' }],
        rejected: [user, { role: 'assistant', content: 'go' }],
      },
    ]) {
      const pair = tokenize(raw);
      assert.ok(pair.kind === 'ok');
      assert.deepEqual(pair.prompt_input_ids, expected.prompt);
      assert.deepEqual(pair.chosen_input_ids, expected.chosen);
    }
  });

  it('pre-tokenized rows are used exactly as given', () => {
    const raw = { prompt_input_ids: [5, 6], chosen_input_ids: [7], rejected_input_ids: [8, 9] };
    assert.deepEqual(tokenize(raw), {
      kind: 'ok',
      prompt_input_ids: [5, 6],
      chosen_input_ids: [7],
      rejected_input_ids: [8, 9],
      warnings: [],
      truncated: false,
    });
    assert.deepEqual(tokenize(raw, { ...roomy, max_length: 3 }), {
      kind: 'dropped',
      reason: 'row 7: 4 tokens > max_length 3',
    });
  });

  it('truncation: keep_end cuts the prompt start, keep_start its end; BOS stays first', () => {
    const row = { prompt: 'abcdefgh', chosen: 'x', rejected: 'yz' }; // 1 + 8 + 3 = 12 tokens at most
    const settings: TruncationSettings = { max_length: 7, max_prompt_length: 4, truncation_mode: 'keep_end' };
    const end = tokenize(row, settings);
    const start = tokenize(row, { ...settings, truncation_mode: 'keep_start' });
    assert.ok(end.kind === 'ok' && start.kind === 'ok');
    assert.deepEqual(end.prompt_input_ids, [BOS, ...bytes('fgh')]);
    assert.deepEqual(start.prompt_input_ids, [BOS, ...bytes('abc')]);
    assert.equal(end.truncated, true);
  });

  it('pairs that cannot fit are dropped with the reason, or their responses cut on request', () => {
    const row = { prompt: 'abcdefgh', chosen: 'x', rejected: 'yz' };
    const settings: TruncationSettings = { max_length: 5, max_prompt_length: 4, truncation_mode: 'keep_end' };
    assert.deepEqual(tokenize(row, settings), {
      kind: 'dropped',
      reason: 'row 7: 7 tokens do not fit max_length 5',
    });
    const cut = tokenize(row, { ...settings, truncate_responses: true });
    assert.ok(cut.kind === 'ok');
    assert.deepEqual([cut.chosen_input_ids, cut.rejected_input_ids], [bytes('x'), bytes('y')]);
  });

  it('identical chosen and rejected are dropped', () => {
    assert.deepEqual(tokenize({ prompt: 'p', chosen: 'same', rejected: 'same' }), {
      kind: 'dropped',
      reason: 'row 7: chosen and rejected are identical after tokenization',
    });
  });

  it('a merge across the prompt/response boundary warns and tokenizes the response on its own', async () => {
    const bpe = await loadTokenizer(join(import.meta.dirname, '..', 'fixtures', 'tokenizers', 'gpt2-bpe'));
    const row = parsePreferenceRow(
      { prompt: 'The movie was grea', chosen: 't fun', rejected: 'tly boring' },
      3,
    );
    const pair = tokenizePair(bpe, row, 3, roomy);
    assert.ok(pair.kind === 'ok');
    assert.match(pair.warnings[0], /^row 3: chosen: the prompt's tokens are not a prefix of prompt\+chosen/);
    assert.deepEqual(pair.chosen_input_ids, [
      ...bpe.encode('t fun', { addSpecialTokens: false }),
      bpe.eosTokenId,
    ]);
  });

  it('malformed rows name the row and the field', () => {
    assert.throws(() => parsePreferenceRow('text', 4), /^RowError: row 4: expected a JSON object$/);
    assert.throws(
      () => parsePreferenceRow({ prompt: 'p', chosen: 'c' }, 4, 'standard'),
      /row 4: rejected: .*standard format/,
    );
    assert.throws(
      () => parsePreferenceRow({ prompt: 'p', chosen: 3, rejected: 'r' }, 5),
      /row 5: chosen: .*standard format/,
    );
    assert.throws(
      () => parsePreferenceRow({ question: 'p' }, 9),
      /row 9: cannot tell the format from fields \["question"\]/,
    );
    assert.throws(
      () => parsePreferenceRow({ chosen_input_ids: [1], rejected_input_ids: [-1], prompt_input_ids: [] }, 6),
      /row 6: rejected_input_ids\.0: /,
    );
    assert.throws(
      () => parsePreferenceRow({ chosen: 'same', rejected: 'same' }, 8),
      /row 8: chosen: chosen and rejected must differ/,
    );
  });
});
