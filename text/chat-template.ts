// Chat templates rendered with @huggingface/jinja the way transformers' apply_chat_template(tokenize=False)
// renders them: the same variables (messages, add_generation_prompt, tools, documents, the named special tokens,
// extra keyword arguments) and the same globals (raise_exception, strftime_now; trim_blocks and lstrip_blocks on).

import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  content: string;
}

export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
}

/** The named special tokens transformers passes to templates, by their variable names (bos_token, ...). */
export type SpecialTokenStrings = Partial<
  Record<
    'bos_token' | 'eos_token' | 'unk_token' | 'pad_token' | 'sep_token' | 'cls_token' | 'mask_token',
    string
  >
>;

export interface RenderOptions {
  /** Append the header that opens the assistant's turn. */
  addGenerationPrompt?: boolean;
  /**
   * Extra template variables, as transformers' **kwargs (tools, documents, date_string, enable_thinking...);
   * they override the special tokens. Templates that call strftime_now render today's date unless given
   * date_string, so pass it where the output must be reproducible.
   */
  context?: Record<string, unknown>;
}

export class ChatTemplate {
  readonly #template: Template;

  /** `source` names where the template came from, for messages (a file, or "template override"). */
  constructor(
    readonly text: string,
    readonly source: string,
  ) {
    try {
      this.#template = new Template(text);
    } catch (error) {
      throw new ChatTemplateError(`${source}: chat template does not parse (${(error as Error).message})`);
    }
  }

  render(
    messages: readonly ChatMessage[],
    specialTokens: SpecialTokenStrings,
    options: RenderOptions = {},
  ): string {
    try {
      return this.#template.render({
        // transformers passes tools=None and documents=None when not given: `tools is none` holds.
        tools: null,
        documents: null,
        ...specialTokens,
        ...options.context,
        messages, // converted to jinja values: templates cannot change the caller's rows
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (error) {
      // raise_exception('...') in the template arrives here with the template's own message.
      throw new ChatTemplateError(`${this.source}: chat template: ${(error as Error).message}`);
    }
  }
}
