// DPO tokenization on the byte-level tokenizer (ids are bytes; <|bos|> 256, <|eos|> 257), where every expected
// id can be written by hand; the GPT-2-style and Llama-style fixture tokenizers for merges across the
// prompt/response boundary, a missing BOS, and a template that writes BOS itself.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parsePreferenceRow } from '../../text/preference-rows.ts';
import {
  type PairTokenizationSettings,
  type TokenizedPair,
  tallyPairs,
  tokenizePair,
} from '../../text/preference-tokenizer.ts';
import { loadTokenizer, type TextTokenizer } from '../../text/tokenizer.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'tokenizers');
const [BOS, EOS] = [256, 257];
const bytes = (text: string) => [...Buffer.from(text)];
const roomy: PairTokenizationSettings = {
  max_length: 512,
  max_prompt_length: 256,
  truncation_mode: 'keep_end',
};
const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });

function ok(pair: TokenizedPair): Extract<TokenizedPair, { kind: 'ok' }> {
  assert.equal(pair.kind, 'ok', JSON.stringify(pair));
  return pair as Extract<TokenizedPair, { kind: 'ok' }>;
}

describe('DPO tokenization', () => {
  let byteLevel: TextTokenizer;
  let gpt2: TextTokenizer;
  let llama: TextTokenizer;
  before(async () => {
    [byteLevel, gpt2, llama] = await Promise.all(
      ['byte-level', 'gpt2-bpe', 'llama-bpe'].map((name) => loadTokenizer(join(fixtures, name))),
    );
  });
  const tokenize = (raw: unknown, settings = roomy, tokenizer = byteLevel) =>
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

  it('never doubles a BOS or EOS already in the text; EOS then whitespace counts as ending with EOS', () => {
    const pair = ok(tokenize({ prompt: '<|bos|>ab', chosen: 'c<|eos|>\n', rejected: 'd<|eos|> x' }));
    assert.deepEqual(pair.prompt_input_ids, [BOS, ...bytes('ab')]);
    assert.deepEqual(pair.chosen_input_ids, [...bytes('c'), EOS, ...bytes('\n')]);
    assert.deepEqual(pair.rejected_input_ids, [...bytes('d'), EOS, ...bytes(' x'), EOS]);
  });

  it("implicit prompt: the strings' common prefix, a final space moved to the responses (TRL)", () => {
    const pair = ok(tokenize({ chosen: 'Q: 2+2? A: 4', rejected: 'Q: 2+2? A: 5' }));
    assert.deepEqual(pair.prompt_input_ids, [BOS, ...bytes('Q: 2+2? A:')]);
    assert.deepEqual(
      [pair.chosen_input_ids, pair.rejected_input_ids],
      [
        [...bytes(' 4'), EOS],
        [...bytes(' 5'), EOS],
      ],
    );
    // One response extends the other: the shorter one's response is EOS alone.
    const extended = ok(tokenize({ chosen: 'Yes', rejected: 'Yes, no' }));
    assert.deepEqual(
      [extended.prompt_input_ids, extended.chosen_input_ids, extended.rejected_input_ids],
      [[BOS, ...bytes('Yes')], [EOS], [...bytes(', no'), EOS]],
    );
    // 😀 and 😁 share their first UTF-16 unit: the prompt stops before the pair, not inside it.
    const emoji = ok(tokenize({ chosen: 'x😀', rejected: 'x😁' }));
    assert.deepEqual(emoji.prompt_input_ids, [BOS, ...bytes('x')]);
    assert.deepEqual(emoji.chosen_input_ids, [...bytes('😀'), EOS]);
  });

  it('conversational rows: prompt with the generation prompt, responses as its continuation; explicit or implicit prompt', () => {
    // Byte-level template: '<|user|>hi<|eos|>' then '<|assistant|>' as the generation prompt.
    const explicit = ok(
      tokenize({ prompt: [user('hi')], chosen: [assistant('hello')], rejected: [assistant('go')] }),
    );
    const implicit = ok(
      tokenize({ chosen: [user('hi'), assistant('hello')], rejected: [user('hi'), assistant('go')] }),
    );
    for (const pair of [explicit, implicit]) {
      assert.deepEqual(pair, {
        kind: 'ok',
        prompt_input_ids: [BOS, ...bytes('<|user|>hi'), EOS, ...bytes('<|assistant|>')],
        chosen_input_ids: [...bytes('hello'), EOS], // the template's own EOS, not doubled
        rejected_input_ids: [...bytes('go'), EOS],
        warnings: [],
        truncated: false,
      });
    }
  });

  it('a template that writes BOS itself gets no second one, and it stays first through keep_end truncation', async () => {
    const template =
      "{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}";
    const tokenizer = await loadTokenizer(join(fixtures, 'byte-level'), { chatTemplate: template });
    const row = { prompt: [user('abcdef')], chosen: [assistant('y')], rejected: [assistant('n')] };
    const pair = ok(tokenize(row, roomy, tokenizer));
    assert.deepEqual(pair.prompt_input_ids, [BOS, ...bytes('user: abcdef'), EOS]);
    assert.deepEqual(pair.chosen_input_ids, [...bytes('assistant: y'), EOS]);
    const cut = ok(
      tokenize(row, { max_length: 20, max_prompt_length: 5, truncation_mode: 'keep_end' }, tokenizer),
    );
    assert.deepEqual(cut.prompt_input_ids, [BOS, ...bytes('def'), EOS]); // 5 tokens, BOS included
  });

  it('Llama: the template writes <s>; the prompt has exactly one BOS and the response ends with one </s>', () => {
    const pair = ok(
      tokenize(
        { prompt: [user('hi')], chosen: [assistant('hello')], rejected: [assistant('bye')] },
        roomy,
        llama,
      ),
    );
    assert.equal(pair.prompt_input_ids.filter((id) => id === llama.bosTokenId).length, 1);
    assert.equal(pair.prompt_input_ids[0], llama.bosTokenId);
    assert.equal(pair.chosen_input_ids.filter((id) => id === llama.eosTokenId).length, 1);
    assert.equal(pair.chosen_input_ids.at(-1), llama.eosTokenId);
    assert.equal(
      llama.decode([...pair.prompt_input_ids, ...pair.chosen_input_ids]),
      '<s>[INST] hi [/INST] hello</s>',
    );
    assert.deepEqual(pair.warnings, []);
  });

  it('a template that renders the prompt differently in the full conversation warns and uses the common prefix', async () => {
    // A thinking template: the generation prompt opens <think>, the history does not show it.
    const template =
      "{% for m in messages %}{{ '<' + m['role'] + '>' + m['content'] + '</>' }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ '<assistant><think>' }}{% endif %}";
    const tokenizer = await loadTokenizer(join(fixtures, 'byte-level'), { chatTemplate: template });
    const pair = ok(
      tokenize(
        { prompt: [user('q')], chosen: [assistant('a')], rejected: [assistant('b')] },
        roomy,
        tokenizer,
      ),
    );
    assert.deepEqual(pair.prompt_input_ids, [BOS, ...bytes('<user>q</><assistant>')]);
    assert.deepEqual(pair.chosen_input_ids, [...bytes('a</>'), EOS]);
    assert.deepEqual(
      pair.warnings.map((w) => [w.kind, w.field]),
      [
        ['template_not_prefix', 'chosen'],
        ['template_not_prefix', 'rejected'],
      ],
    );
    assert.match(pair.warnings[0].message, /^row 7: chosen: .* from character 21: "<think>" vs "a<\/>"/);
  });

  it('a template raising an exception is a RowError naming the row and field', async () => {
    const template =
      "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}";
    const tokenizer = await loadTokenizer(join(fixtures, 'byte-level'), { chatTemplate: template });
    const raw = {
      prompt: [{ role: 'system', content: 's' }],
      chosen: [assistant('a')],
      rejected: [assistant('b')],
    };
    assert.throws(
      () => tokenizePair(tokenizer, parsePreferenceRow(raw, 4), 4, roomy),
      /^RowError: row 4: prompt: .*tokenizer\.json chat_template: chat template: System role not supported$/,
    );
  });

  it('pre-tokenized rows are used exactly as given, never cut; too long is dropped', () => {
    const raw = { prompt_input_ids: [5, 6], chosen_input_ids: [7], rejected_input_ids: [8, 9] };
    assert.deepEqual(tokenize(raw, { ...roomy, max_prompt_length: 1 }), {
      kind: 'ok',
      prompt_input_ids: [5, 6],
      chosen_input_ids: [7],
      rejected_input_ids: [8, 9],
      warnings: [],
      truncated: false,
    });
    assert.deepEqual(tokenize(raw, { ...roomy, max_length: 3 }), {
      kind: 'dropped',
      cause: 'too_long',
      reason: 'row 7: 4 tokens > max_length 3 (pre-tokenized, not cut)',
    });
  });

  it('truncation: keep_end cuts the prompt start, keep_start its end; BOS stays first; responses untouched', () => {
    const row = { prompt: 'abcdefgh', chosen: 'x', rejected: 'yz' }; // 1 + 8 + 3 = 12 tokens at most
    const settings: PairTokenizationSettings = {
      max_length: 7,
      max_prompt_length: 4,
      truncation_mode: 'keep_end',
    };
    assert.deepEqual(tokenize(row, settings), {
      kind: 'ok',
      prompt_input_ids: [BOS, ...bytes('fgh')],
      chosen_input_ids: [...bytes('x'), EOS],
      rejected_input_ids: [...bytes('yz'), EOS],
      warnings: [],
      truncated: true,
    });
    const start = ok(tokenize(row, { ...settings, truncation_mode: 'keep_start' }));
    assert.deepEqual(start.prompt_input_ids, [BOS, ...bytes('abc')]);
    // Fits max_length: the prompt is not cut even though it is longer than max_prompt_length.
    const fits = ok(tokenize(row, { ...settings, max_length: 12 }));
    assert.deepEqual([fits.prompt_input_ids, fits.truncated], [[BOS, ...bytes('abcdefgh')], false]);
  });

  it('pairs that cannot fit are dropped with the reason, or their responses cut on request (losing EOS)', () => {
    const row = { prompt: 'abcdefgh', chosen: 'x', rejected: 'yz' };
    const settings: PairTokenizationSettings = {
      max_length: 5,
      max_prompt_length: 4,
      truncation_mode: 'keep_end',
    };
    assert.deepEqual(tokenize(row, settings), {
      kind: 'dropped',
      cause: 'too_long',
      reason: 'row 7: 7 tokens with the prompt cut to 4 > max_length 5',
    });
    assert.deepEqual(tokenize(row, { ...settings, truncate_responses: true }), {
      kind: 'ok',
      prompt_input_ids: [BOS, ...bytes('fgh')],
      chosen_input_ids: bytes('x'),
      rejected_input_ids: bytes('y'),
      warnings: [],
      truncated: true,
    });
    // No room left for any response token: dropped even when cutting responses.
    assert.equal(tokenize(row, { ...settings, max_length: 4, truncate_responses: true }).kind, 'dropped');
  });

  it('identical chosen and rejected are dropped, also when response truncation makes them so', () => {
    assert.deepEqual(tokenize({ prompt: 'p', chosen: 'same', rejected: 'same' }), {
      kind: 'dropped',
      cause: 'identical',
      reason: 'row 7: chosen and rejected are identical after tokenization',
    });
    const settings: PairTokenizationSettings = {
      max_length: 4,
      max_prompt_length: 2,
      truncation_mode: 'keep_end',
      truncate_responses: true,
    };
    assert.deepEqual(tokenize({ prompt: 'p', chosen: 'abX', rejected: 'abY' }, settings), {
      kind: 'dropped',
      cause: 'identical',
      reason: 'row 7: chosen and rejected are identical after tokenization and truncation',
    });
  });

  it('a merge across the prompt/response boundary warns and tokenizes the response on its own', () => {
    const pair = ok(
      tokenize({ prompt: 'The movie was grea', chosen: 't fun', rejected: ' boring' }, roomy, gpt2),
    );
    assert.deepEqual(
      pair.warnings.map((w) => [w.kind, w.field]),
      [['boundary_merge', 'chosen']],
    );
    assert.match(
      pair.warnings[0].message,
      /^row 7: chosen: a token merges across the boundary after "vie was grea"/,
    );
    assert.deepEqual(pair.chosen_input_ids, [
      ...gpt2.encode('t fun', { addSpecialTokens: false }),
      gpt2.eosTokenId,
    ]);
    // A clean boundary: the response ids are exactly what prompt+response adds after the prompt's ids.
    const full = gpt2.encode('The movie was grea boring', { addSpecialTokens: false });
    assert.deepEqual(pair.rejected_input_ids, [...full.slice(pair.prompt_input_ids.length), gpt2.eosTokenId]);
    assert.deepEqual(pair.prompt_input_ids, gpt2.encode('The movie was grea', { addSpecialTokens: false }));
  });

  it('no prompt and no BOS warns that the first response token has no context', () => {
    const pair = ok(tokenize({ chosen: 'A', rejected: 'B' }, roomy, gpt2));
    assert.deepEqual(pair.prompt_input_ids, []);
    assert.deepEqual(
      pair.warnings.map((w) => w.kind),
      ['no_context'],
    );
  });

  it('is pure: the same row gives the same ids and is left unchanged', () => {
    const raw = { prompt: [user('hi')], chosen: [assistant('a')], rejected: [assistant('b')] };
    const before = structuredClone(raw);
    assert.deepEqual(tokenize(raw), tokenize(raw));
    assert.deepEqual(raw, before);
  });

  it('tallyPairs counts ok, truncated, drops by cause and warnings by kind', () => {
    const settings: PairTokenizationSettings = {
      max_length: 7,
      max_prompt_length: 4,
      truncation_mode: 'keep_end',
    };
    const pairs = [
      tokenize({ prompt: 'abcdefgh', chosen: 'x', rejected: 'y' }, settings), // truncated
      tokenize({ prompt: 'a', chosen: 'xxxxxxxx', rejected: 'y' }, settings), // too long
      tokenize({ prompt: 'a', chosen: 'same', rejected: 'same' }, settings), // identical
      tokenize({ prompt: 'The movie was grea', chosen: 't fun', rejected: 't' }, roomy, gpt2), // 2 merges, 1 pair
    ];
    assert.deepEqual(tallyPairs(pairs), {
      ok: 2,
      truncated: 1,
      dropped: { too_long: 1, identical: 1 },
      warnings: { boundary_merge: 1, template_not_prefix: 0, no_context: 0 },
    });
  });

  it('rejects settings that are not positive integers or a known mode', () => {
    const row = parsePreferenceRow({ prompt: 'p', chosen: 'a', rejected: 'b' }, 0);
    assert.throws(
      () => tokenizePair(byteLevel, row, 0, { ...roomy, max_length: 0 }),
      /^RangeError: max_length: expected a positive integer, received 0$/,
    );
    assert.throws(
      () => tokenizePair(byteLevel, row, 0, { ...roomy, truncation_mode: 'middle' as 'keep_end' }),
      /truncation_mode: expected keep_end or keep_start, received "middle"/,
    );
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
      () =>
        parsePreferenceRow(
          { prompt: [user('q')], chosen: [{ role: 'assistant' }], rejected: [assistant('b')] },
          3,
        ),
      /row 3: chosen\.0\.content: .*conversational format/,
    );
    assert.throws(
      () =>
        parsePreferenceRow({ chosen: [user('a'), assistant('b')], rejected: [user('c'), assistant('d')] }, 2),
      /row 2: prompt: missing, and chosen and rejected share no leading messages/,
    );
  });
});
