// Chat templates rendered by @huggingface/jinja against transformers' apply_chat_template (fixture made by
// test/fixtures/tokenizers/make_fixtures.py): ChatML, Llama 2/3/3.1, Mistral, Zephyr, Gemma, a thinking template
// and one with tools, over six conversations with and without the generation prompt — the same text, or the same
// raise_exception message.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { type ChatMessage, ChatTemplate, ChatTemplateError } from '../../text/chat-template.ts';
import { loadTokenizer, type TextTokenizer } from '../../text/tokenizer.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'tokenizers');
const fixture = JSON.parse(readFileSync(join(fixtures, 'chat-templates.json'), 'utf8')) as {
  templates: Record<string, string>;
  conversations: ChatMessage[][];
  cases: {
    template: string;
    conversation: number;
    add_generation_prompt: boolean;
    context: Record<string, unknown>;
    rendered?: string;
    error?: string;
  }[];
};

describe('chat templates match transformers', () => {
  let tokenizer: TextTokenizer;
  before(async () => {
    tokenizer = await loadTokenizer(join(fixtures, 'byte-level')); // <|bos|> <|eos|> <|pad|>, as in the fixture
  });

  for (const name of Object.keys(fixture.templates)) {
    const cases = fixture.cases.filter((c) => c.template === name);
    it(`${name}: ${cases.length} renderings (${cases.filter((c) => c.error).length} raise_exception)`, () => {
      for (const c of cases) {
        const render = () =>
          tokenizer.applyChatTemplate(fixture.conversations[c.conversation], {
            template: fixture.templates[name],
            addGenerationPrompt: c.add_generation_prompt,
            context: c.context,
          });
        const label = `conversation ${c.conversation}, add_generation_prompt ${c.add_generation_prompt}`;
        if (c.error !== undefined) {
          assert.throws(render, (error: Error) => {
            assert.ok(error instanceof ChatTemplateError, label);
            assert.equal(error.message, `template override: chat template: ${c.error}`, label);
            return true;
          });
        } else {
          assert.equal(render(), c.rendered, label);
        }
      }
    });
  }
});

describe('ChatTemplate', () => {
  it('names its source when the template does not parse', () => {
    assert.throws(
      () => new ChatTemplate('{% for m in messages %}', 'model/tokenizer.json chat_template'),
      /^ChatTemplateError: model\/tokenizer\.json chat_template: chat template does not parse/,
    );
  });

  it('context overrides special tokens; tools and documents default to none', () => {
    const template = new ChatTemplate(
      '{{ eos_token }}{% if tools is none and documents is none %}|no tools{% endif %}',
      'test',
    );
    assert.equal(template.render([], { eos_token: '</s>' }), '</s>|no tools');
    assert.equal(template.render([], { eos_token: '</s>' }, { context: { eos_token: 'E' } }), 'E|no tools');
    assert.equal(template.render([], {}, { context: { tools: [{ name: 'f' }] } }), '');
  });
});
