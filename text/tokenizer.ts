// Hugging Face tokenizers in pure JS: tokenizer.json + tokenizer_config.json from a model directory, special
// tokens, and chat templates rendered with @huggingface/jinja (apply_chat_template semantics).

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

export class TokenizerError extends Error {
  override readonly name = 'TokenizerError';
}

export interface ChatMessage {
  role: string;
  content: string;
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object. */
type SpecialToken = string | { content: string } | null | undefined;

export interface TokenizerConfig {
  bos_token?: SpecialToken;
  eos_token?: SpecialToken;
  pad_token?: SpecialToken;
  unk_token?: SpecialToken;
  add_bos_token?: boolean;
  add_eos_token?: boolean;
  chat_template?: string | { name: string; template: string }[];
  [key: string]: unknown;
}

const contentOf = (token: SpecialToken): string | undefined =>
  token === null || token === undefined ? undefined : typeof token === 'string' ? token : token.content;

export class TextTokenizer {
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly padToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  readonly padTokenId: number | undefined;
  readonly chatTemplate: string | undefined;
  readonly #tokenizer: Tokenizer;
  #template: Template | undefined;

  constructor(
    tokenizerJson: object,
    readonly config: TokenizerConfig,
    readonly source = 'tokenizer.json',
  ) {
    try {
      this.#tokenizer = new Tokenizer(tokenizerJson, config);
    } catch (error) {
      throw new TokenizerError(`${source}: unsupported tokenizer (${(error as Error).message})`);
    }
    this.bosToken = contentOf(config.bos_token);
    this.eosToken = contentOf(config.eos_token);
    this.padToken = contentOf(config.pad_token);
    this.bosTokenId = this.#idOf(this.bosToken);
    this.eosTokenId = this.#idOf(this.eosToken);
    this.padTokenId = this.#idOf(this.padToken) ?? this.eosTokenId;
    const template = config.chat_template;
    this.chatTemplate = Array.isArray(template)
      ? template.find((t) => t.name === 'default')?.template
      : template;
  }

  #idOf(token: string | undefined): number | undefined {
    return token === undefined ? undefined : this.#tokenizer.token_to_id(token);
  }

  get vocabSize(): number {
    return this.#tokenizer.get_vocab(true).size;
  }

  /** Token ids; special tokens written in the text are recognized, and the post-processor adds BOS etc. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.#tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return ''; // the library rejects an empty list
    return this.#tokenizer.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.#tokenizer.token_to_id(token);
  }

  /** Renders messages with the chat template (or `template`), as transformers' apply_chat_template(tokenize=False). */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    options: { addGenerationPrompt?: boolean; template?: string } = {},
  ): string {
    const source = options.template ?? this.chatTemplate;
    if (!source)
      throw new TokenizerError(`${this.source}: no chat_template in tokenizer_config.json and none given`);
    if (!options.template) this.#template ??= new Template(source);
    const template = options.template ? new Template(options.template) : this.#template!;
    return template.render({
      messages: messages.map((message) => ({ ...message })),
      add_generation_prompt: options.addGenerationPrompt ?? false,
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
      pad_token: this.padToken ?? '', // raise_exception is built into @huggingface/jinja
    });
  }
}

/** Loads tokenizer.json and tokenizer_config.json (optional) from a Hugging Face model directory. */
export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const tokenizerPath = join(dir, 'tokenizer.json');
  const tokenizerJson = await readJson(tokenizerPath, true);
  const config = ((await readJson(join(dir, 'tokenizer_config.json'), false)) ?? {}) as TokenizerConfig;
  return new TextTokenizer(tokenizerJson as object, config, tokenizerPath);
}

async function readJson(path: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TokenizerError(
      `${path}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new TokenizerError(`${path}: invalid JSON (${(error as Error).message})`);
  }
}
