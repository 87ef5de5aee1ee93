// A byte-level tokenizer for tiny test and demo models: one token per byte (GPT-2's byte→character table, so
// any text encodes), no merges, plus <|bos|>, <|eos|>, <|pad|>, a post-processor that puts <|bos|> first (as
// Llama's does) and a minimal chat template. Loads in @huggingface/tokenizers and Python's tokenizers /
// transformers alike, with the same ids (test/fixtures/tokenizers/expected.json).

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const byteLevelSpecialTokens = ['<|bos|>', '<|eos|>', '<|pad|>'] as const;
/** 256 byte tokens, then the specials. */
export const byteLevelVocabSize = 256 + byteLevelSpecialTokens.length;
const bosId = 256;

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to code points from 256 up. */
function byteCharacters(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++));
}

const chatTemplate =
  "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

export function byteLevelTokenizerJson(): object {
  const vocab = Object.fromEntries(byteCharacters().map((character, id) => [character, id]));
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: byteLevelSpecialTokens.map((content, i) => ({
      id: bosId + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
    // transformers 5 ignores tokenizer_config's add_bos_token when tokenizer.json exists: this adds BOS.
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|bos|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<|bos|>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<|bos|>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<|bos|>': { id: '<|bos|>', ids: [bosId], tokens: ['<|bos|>'] } },
    },
    decoder: { type: 'ByteLevel', ...byteLevel },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

export function byteLevelTokenizerConfig(): object {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: '<|bos|>',
    eos_token: '<|eos|>',
    pad_token: '<|pad|>',
    add_bos_token: true,
    model_max_length: 4096,
    chat_template: chatTemplate,
  };
}

/** Writes tokenizer.json and tokenizer_config.json into dir. */
export async function writeByteLevelTokenizer(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'tokenizer.json'), `${JSON.stringify(byteLevelTokenizerJson(), null, 2)}\n`);
  await writeFile(
    join(dir, 'tokenizer_config.json'),
    `${JSON.stringify(byteLevelTokenizerConfig(), null, 2)}\n`,
  );
}
