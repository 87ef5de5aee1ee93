// Hugging Face tokenizers in pure JS: a model directory's tokenizer.json (run by @huggingface/tokenizers) with
// tokenizer_config.json's special tokens and chat template, behaving as transformers 5 loads them.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import {
  type ChatMessage,
  ChatTemplate,
  type RenderOptions,
  type SpecialTokenStrings,
} from './chat-template.ts';

export type { ChatMessage } from './chat-template.ts';

export class TokenizerError extends Error {
  override readonly name = 'TokenizerError';
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object. */
type SpecialToken = string | { content: string } | null | undefined;

const specialTokenNames = [
  'bos_token',
  'eos_token',
  'unk_token',
  'pad_token',
  'sep_token',
  'cls_token',
  'mask_token',
] as const;

export interface TokenizerConfig {
  bos_token?: SpecialToken;
  eos_token?: SpecialToken;
  unk_token?: SpecialToken;
  pad_token?: SpecialToken;
  /**
   * Read but not applied: as in transformers 5, with a tokenizer.json present its post-processor alone decides
   * whether encoding adds BOS/EOS (see TextTokenizer.addsBos).
   */
  add_bos_token?: boolean;
  add_eos_token?: boolean;
  chat_template?: string | { name: string; template: string }[];
  [key: string]: unknown;
}

/**
 * transformers 5 builds some tokenizer classes' pipelines itself and takes only the vocabulary, merges, added
 * tokens and post-processor from tokenizer.json. LlamaTokenizer(Fast) is where that changes ids: Metaspace
 * pre-tokenization writes "▁" before the text's start only (prepend_scheme "first"; "always" with legacy: true),
 * where Llama 2's own tokenizer.json normalizer writes one before every piece between special tokens
 * ("<s>[INST]" becomes "▁[INST]") and before a leading space. The other classes checked here (GPT2Tokenizer,
 * PreTrainedTokenizerFast) run tokenizer.json as written.
 */
function asTransformersBuildsIt(tokenizerJson: Record<string, unknown>, config: TokenizerConfig) {
  const model = tokenizerJson.model as Record<string, unknown> | undefined;
  if (!['LlamaTokenizer', 'LlamaTokenizerFast'].includes(config.tokenizer_class as string))
    return tokenizerJson;
  if (model?.type !== 'BPE') return tokenizerJson; // the constructor names what is wrong
  const addPrefixSpace = config.add_prefix_space !== false;
  const prependScheme = !addPrefixSpace ? 'never' : config.legacy === true ? 'always' : 'first';
  return {
    ...tokenizerJson,
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: prependScheme, split: false },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(addPrefixSpace ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: { ...model, fuse_unk: true, byte_fallback: true },
  };
}

/** Model types @huggingface/tokenizers implements; it would silently guess for any other. */
const supportedModelTypes = ['BPE', 'Unigram', 'WordPiece'];

const contentOf = (token: unknown): string | undefined =>
  typeof token === 'string'
    ? token
    : typeof token === 'object' &&
        token !== null &&
        typeof (token as { content?: unknown }).content === 'string'
      ? (token as { content: string }).content
      : undefined;

export class TextTokenizer {
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly unkToken: string | undefined;
  readonly padToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  readonly unkTokenId: number | undefined;
  /** No fallback to EOS here (transformers has none either); batching code picks its own pad id. */
  readonly padTokenId: number | undefined;
  /** Tokens including added ones, as transformers' len(tokenizer). */
  readonly vocabSize: number;
  /** Whether encode(text) puts BOS first: the tokenizer.json post-processor adds it (as transformers 5). */
  readonly addsBos: boolean;
  readonly chatTemplate: string | undefined;
  readonly #tokenizer: Tokenizer;
  readonly #specialTokens: SpecialTokenStrings;
  #compiledTemplate: ChatTemplate | undefined;

  /** `source` names the tokenizer in messages (the tokenizer.json path when loaded from a directory). */
  constructor(
    tokenizerJson: unknown,
    readonly config: TokenizerConfig,
    readonly source = 'tokenizer.json',
  ) {
    const model = (tokenizerJson as { model?: { type?: unknown } } | null)?.model;
    if (typeof model !== 'object' || model === null)
      throw new TokenizerError(`${source}: no "model" object; is this a Hugging Face tokenizer.json?`);
    if (!supportedModelTypes.includes(model.type as string)) {
      throw new TokenizerError(
        `${source}: model.type ${JSON.stringify(model.type)} is not supported (${supportedModelTypes.join(', ')})`,
      );
    }
    try {
      this.#tokenizer = new Tokenizer(tokenizerJson as object, config);
    } catch (error) {
      throw new TokenizerError(`${source}: unsupported tokenizer (${(error as Error).message})`);
    }
    this.#specialTokens = {};
    for (const name of specialTokenNames) {
      const content = contentOf(config[name]);
      if (content === undefined) continue;
      if (this.#tokenizer.token_to_id(content) === undefined) {
        throw new TokenizerError(
          `${source}: ${name} ${JSON.stringify(content)} from tokenizer_config.json is not in the vocabulary`,
        );
      }
      this.#specialTokens[name] = content;
    }
    [this.bosToken, this.eosToken, this.unkToken, this.padToken] = [
      this.#specialTokens.bos_token,
      this.#specialTokens.eos_token,
      this.#specialTokens.unk_token,
      this.#specialTokens.pad_token,
    ];
    [this.bosTokenId, this.eosTokenId, this.unkTokenId, this.padTokenId] = [
      this.bosToken,
      this.eosToken,
      this.unkToken,
      this.padToken,
    ].map((token) => (token === undefined ? undefined : this.#tokenizer.token_to_id(token)));
    this.vocabSize = this.#tokenizer.get_vocab(true).size;
    this.addsBos = this.bosTokenId !== undefined && this.encode('')[0] === this.bosTokenId;
    const template = config.chat_template;
    this.chatTemplate = Array.isArray(template)
      ? template.find((entry) => entry.name === 'default')?.template
      : template;
  }

  /** Token ids. Special tokens written in the text become their ids; addSpecialTokens (default true) runs the
   * post-processor, which adds BOS for Llama-style tokenizers. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.#tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** Text of ids; special tokens kept unless skipSpecialTokens. No clean-up of spaces (transformers 5's default). */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const unknown = ids.find((id) => this.#tokenizer.id_to_token(id) === undefined);
    if (unknown !== undefined)
      throw new TokenizerError(`${this.source}: cannot decode id ${unknown}: not in the vocabulary`);
    if (ids.length === 0) return ''; // the library rejects an empty list
    return this.#tokenizer.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.#tokenizer.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.#tokenizer.id_to_token(id);
  }

  /**
   * Renders messages with the chat template, as transformers' apply_chat_template(tokenize=False); `template`
   * replaces the tokenizer's own for this call.
   */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    options: RenderOptions & { template?: string } = {},
  ): string {
    let template: ChatTemplate;
    if (options.template !== undefined) {
      template = new ChatTemplate(options.template, 'template override');
    } else {
      if (this.chatTemplate === undefined) {
        throw new TokenizerError(
          `${this.source}: no chat template (tokenizer_config.json chat_template or chat_template.jinja) and none given`,
        );
      }
      this.#compiledTemplate ??= new ChatTemplate(this.chatTemplate, `${this.source} chat_template`);
      template = this.#compiledTemplate;
    }
    return template.render(messages, this.#specialTokens, options);
  }
}

export interface LoadTokenizerOptions {
  /** Replaces the directory's chat template. */
  chatTemplate?: string;
  /**
   * Build the pipeline as transformers 5 does for tokenizer_config's tokenizer_class (default true); false runs
   * tokenizer.json exactly as written, as the `tokenizers` library and transformers 4 do.
   */
  followTokenizerClass?: boolean;
}

/**
 * Loads a Hugging Face model directory's tokenizer: tokenizer.json (required), tokenizer_config.json and
 * special_tokens_map.json (optional, the config wins), and chat_template.jinja, which takes priority over the
 * config's chat_template as in transformers. `chatTemplate` overrides both.
 */
export async function loadTokenizer(dir: string, options: LoadTokenizerOptions = {}): Promise<TextTokenizer> {
  const tokenizerPath = join(dir, 'tokenizer.json');
  const tokenizerJson = await readJsonObject(tokenizerPath, true);
  const config = (await readJsonObject(join(dir, 'tokenizer_config.json'), false)) ?? {};
  const specialTokensMap = (await readJsonObject(join(dir, 'special_tokens_map.json'), false)) ?? {};
  for (const name of specialTokenNames)
    if (!(name in config) && name in specialTokensMap) config[name] = specialTokensMap[name];
  const templateFile = await readText(join(dir, 'chat_template.jinja'), false);
  const chatTemplate = options.chatTemplate ?? templateFile;
  if (chatTemplate !== undefined) config.chat_template = chatTemplate;
  const pipeline =
    options.followTokenizerClass === false
      ? tokenizerJson
      : asTransformersBuildsIt(tokenizerJson, config as TokenizerConfig);
  return new TextTokenizer(pipeline, config as TokenizerConfig, tokenizerPath);
}

async function readText(path: string, required: boolean): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (!required && code === 'ENOENT') return undefined;
    throw new TokenizerError(`${path}: cannot read (${code ?? (error as Error).message})`);
  }
}

async function readJsonObject(path: string, required: true): Promise<Record<string, unknown>>;
async function readJsonObject(path: string, required: false): Promise<Record<string, unknown> | undefined>;
async function readJsonObject(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  const text = await readText(path, required);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TokenizerError(`${path}: invalid JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new TokenizerError(`${path}: expected a JSON object`);
  return value as Record<string, unknown>;
}
