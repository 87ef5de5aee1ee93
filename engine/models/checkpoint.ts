// Loads and saves Hugging Face causal-LM directories: config.json, model.safetensors (or shards listed in
// model.safetensors.index.json), generation_config.json. Weights come back float32 under transformers' names;
// every problem names the file and the tensor.

import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { HostTensor } from '../dtype.ts';
import { type ParameterSet, saveParameters } from '../parameters.ts';
import { hostFromStored, SafetensorsFile } from '../safetensors.ts';
import { weightShapes } from './causal-lm.ts';
import { type CausalLmSpec, ModelConfigError, parseModelConfig } from './hf-config.ts';

export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
}

export interface Checkpoint {
  spec: CausalLmSpec;
  /** config.json as written, so a saved model keeps every field transformers wrote. */
  rawConfig: Record<string, unknown>;
  /** float32, one entry per name of weightShapes(spec); a tied lm_head is not among them. */
  parameters: ParameterSet;
  generationConfig?: Record<string, unknown>;
  /** The weight files read, in order: [dir/model.safetensors] or the shards the index lists. */
  files: string[];
}

/** What saveCheckpoint needs: a loaded Checkpoint fits. */
export type CheckpointContents = Pick<Checkpoint, 'rawConfig' | 'parameters' | 'generationConfig'>;

export interface SaveCheckpointOptions {
  /** Split the weights into shards of at most this many bytes (a larger tensor gets a shard of its own). */
  shardBytes?: number;
  /** Writes further files (a tokenizer, say) into the staging folder, so they appear with the weights. */
  addFiles?: (stagingDir: string) => Promise<void>;
}

const singleFile = 'model.safetensors';
const indexFile = 'model.safetensors.index.json';

/** Buffers, not weights, that some transformers versions saved: GPT-2's causal masks, Llama's rope table. */
const ignoredTensor = { gpt2: /\.attn\.(masked_)?bias$/, llama: /\.rotary_emb\.inv_freq$/ };

export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const configPath = join(dir, 'config.json');
  const rawConfig = (await readJson(configPath, true)) as Record<string, unknown>;
  const spec = specOf(rawConfig, configPath);
  const expected = weightShapes(spec);
  const { files, shardOf } = await weightFiles(dir);
  const parameters: ParameterSet = new Map();
  const foundIn = new Map<string, string>(); // stored name → file
  for (const file of files) {
    const reader = await openWeights(file, dir, shardOf);
    try {
      for (const stored of reader.names) {
        const earlier = foundIn.get(stored);
        if (earlier) throw new CheckpointError(`${file}: ${stored} is also in ${earlier}`);
        foundIn.set(stored, file);
        const name = canonicalName(spec, stored);
        if (ignoredTensor[spec.family].test(name) || (name === 'lm_head.weight' && !expected.has(name)))
          continue;
        const dims = expected.get(name);
        if (!dims) throw new CheckpointError(`${file}: unexpected tensor ${stored} for ${spec.architecture}`);
        const tensor = hostFromStored(stored, await reader.read(stored), { halfToFloat32: true });
        if (tensor.dims.join() !== dims.join()) {
          throw new CheckpointError(
            `${file}: ${stored} has shape [${tensor.dims.join(', ')}], expected [${dims.join(', ')}]`,
          );
        }
        if (tensor.dtype !== 'float32') {
          throw new CheckpointError(
            `${file}: ${stored} is ${tensor.dtype}; weights must be F32, F16 or BF16`,
          );
        }
        parameters.set(name, tensor);
      }
    } finally {
      await reader.close();
    }
  }
  for (const [stored, shard] of shardOf ?? []) {
    if (foundIn.get(stored) !== shard) {
      throw new CheckpointError(
        `${join(dir, indexFile)}: weight_map puts ${stored} in ${shard}, which lacks it`,
      );
    }
  }
  const missing = [...expected.keys()].filter((name) => !parameters.has(name));
  if (missing.length > 0) {
    const listed =
      missing.slice(0, 5).join(', ') + (missing.length > 5 ? ` and ${missing.length - 5} more` : '');
    throw new CheckpointError(
      `${dir}: missing tensors ${listed} (read ${files.map((f) => basename(f)).join(', ')})`,
    );
  }
  const generationConfig = (await readJson(join(dir, 'generation_config.json'), false)) as
    | Record<string, unknown>
    | undefined;
  return { spec, rawConfig, parameters, generationConfig, files };
}

function specOf(rawConfig: Record<string, unknown>, source: string): CausalLmSpec {
  try {
    return parseModelConfig(rawConfig, source);
  } catch (error) {
    if (error instanceof ModelConfigError) throw new CheckpointError(error.message);
    throw error;
  }
}

/** GPT-2 checkpoints from the Hub (openai-community/gpt2) store the transformer's weights without its prefix. */
function canonicalName(spec: CausalLmSpec, stored: string): string {
  const bare = spec.family === 'gpt2' && !stored.startsWith('transformer.') && stored !== 'lm_head.weight';
  return bare ? `transformer.${stored}` : stored;
}

/**
 * The weight files, and for sharded checkpoints the index's stored name → shard file. model.safetensors wins
 * when both are present, as in transformers.
 */
async function weightFiles(dir: string): Promise<{ files: string[]; shardOf?: Map<string, string> }> {
  const single = join(dir, singleFile);
  const hasSingle = await access(single).then(
    () => true,
    () => false,
  );
  if (hasSingle) return { files: [single] };
  const indexPath = join(dir, indexFile);
  const index = await readJson(indexPath, false);
  if (index === undefined) {
    throw new CheckpointError(`${dir}: no weights (looked for ${singleFile} and ${indexFile})`);
  }
  const weightMap = (index as { weight_map?: unknown }).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new CheckpointError(`${indexPath}: weight_map is missing or not an object of tensor → shard file`);
  }
  const shardOf = new Map<string, string>();
  for (const [stored, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
      throw new CheckpointError(
        `${indexPath}: weight_map.${stored} is ${JSON.stringify(shard)}, not a file name`,
      );
    }
    shardOf.set(stored, join(dir, shard));
  }
  return { files: [...new Set(shardOf.values())], shardOf };
}

async function openWeights(
  file: string,
  dir: string,
  shardOf?: Map<string, string>,
): Promise<SafetensorsFile> {
  try {
    return await SafetensorsFile.open(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && shardOf) {
      const listedFor = [...shardOf].find(([, shard]) => shard === file)?.[0];
      throw new CheckpointError(
        `${join(dir, indexFile)}: shard ${basename(file)} (listed for ${listedFor}) does not exist`,
      );
    }
    throw new CheckpointError((error as Error).message);
  }
}

async function readJson(path: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (!required && code === 'ENOENT') return undefined;
    throw new CheckpointError(`${path}: cannot read (${code ?? (error as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CheckpointError(`${path}: invalid JSON (${(error as Error).message})`);
  }
}

/**
 * Writes an HF directory transformers loads unchanged: config.json, model.safetensors (or shards of at most
 * `shardBytes` plus model.safetensors.index.json), generation_config.json. The parameters must be exactly the
 * architecture's weights. Built in a sibling folder, then renamed into place, so `dir` never holds half a
 * checkpoint. Returns the weight file names written.
 */
export async function saveCheckpoint(
  dir: string,
  checkpoint: CheckpointContents,
  options: SaveCheckpointOptions = {},
): Promise<string[]> {
  const spec = specOf(checkpoint.rawConfig, 'config.json');
  const ordered = orderedWeights(spec, checkpoint.parameters);
  const shards = shardsOf(ordered, options.shardBytes ?? Number.POSITIVE_INFINITY);
  const names =
    shards.length === 1
      ? [singleFile]
      : shards.map((_, i) => `model-${pad5(i + 1)}-of-${pad5(shards.length)}.safetensors`);

  await mkdir(dirname(dir), { recursive: true });
  const staging = join(dirname(dir), `.${basename(dir)}.partial-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging);
  await writeJson(join(staging, 'config.json'), checkpoint.rawConfig);
  if (checkpoint.generationConfig) {
    await writeJson(join(staging, 'generation_config.json'), checkpoint.generationConfig);
  }
  // transformers refuses safetensors whose metadata lacks format 'pt'.
  for (const [i, shard] of shards.entries()) {
    await saveParameters(join(staging, names[i]), new Map(shard), { format: 'pt' });
  }
  if (shards.length > 1) {
    const weightMap = Object.fromEntries(
      shards.flatMap((shard, i) => shard.map(([name]) => [name, names[i]])),
    );
    const totalSize = ordered.reduce((sum, [, tensor]) => sum + tensor.data.byteLength, 0);
    await writeJson(join(staging, indexFile), { metadata: { total_size: totalSize }, weight_map: weightMap });
  }
  await options.addFiles?.(staging);
  // Move an existing directory aside before renaming the new one in: a crash leaves one of them whole.
  const previous = join(dirname(dir), `.${basename(dir)}.previous-${process.pid}`);
  const existed = await rename(dir, previous).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return false;
      throw error;
    },
  );
  await rename(staging, dir);
  if (existed) await rm(previous, { recursive: true, force: true });
  return names;
}

/** The parameters in the architecture's order, after checking they are exactly its weights. */
function orderedWeights(spec: CausalLmSpec, parameters: ParameterSet): [string, HostTensor][] {
  const expected = weightShapes(spec);
  const unexpected = [...parameters.keys()].filter((name) => !expected.has(name));
  const missing = [...expected.keys()].filter((name) => !parameters.has(name));
  if (unexpected.length > 0 || missing.length > 0) {
    throw new CheckpointError(
      `cannot save ${spec.architecture}: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`,
    );
  }
  return [...expected].map(([name, dims]) => {
    const tensor = parameters.get(name)!;
    if (tensor.dims.join() !== dims.join()) {
      throw new CheckpointError(
        `cannot save ${spec.architecture}: ${name} has shape [${tensor.dims.join(', ')}], expected [${dims.join(', ')}]`,
      );
    }
    return [name, tensor];
  });
}

/** Greedy packing in weight order, as transformers' save_pretrained(max_shard_size) does. */
function shardsOf(ordered: [string, HostTensor][], shardBytes: number): [string, HostTensor][][] {
  const shards: [string, HostTensor][][] = [[]];
  let filled = 0;
  for (const entry of ordered) {
    const bytes = entry[1].data.byteLength;
    if (filled > 0 && filled + bytes > shardBytes) {
      shards.push([]);
      filled = 0;
    }
    shards[shards.length - 1].push(entry);
    filled += bytes;
  }
  return shards;
}

const pad5 = (n: number) => String(n).padStart(5, '0');

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}
