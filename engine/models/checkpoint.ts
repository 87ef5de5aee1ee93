// Loads and saves Hugging Face causal-LM directories: config.json, model.safetensors (or shards listed in
// model.safetensors.index.json), generation_config.json. Weights come back float32 under transformers' names;
// every problem names the file and the tensor.

import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { elementCount } from '../dtype.ts';
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
  parameters: ParameterSet;
  generationConfig?: Record<string, unknown>;
}

/** Tensors that transformers saved in some versions but that are buffers, not weights. */
const ignoredTensor = /\.attn\.(masked_)?bias$/;

export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const configPath = join(dir, 'config.json');
  const rawConfig = (await readJson(configPath, true)) as Record<string, unknown>;
  let spec: CausalLmSpec;
  try {
    spec = parseModelConfig(rawConfig, configPath);
  } catch (error) {
    if (error instanceof ModelConfigError) throw new CheckpointError(error.message);
    throw error;
  }
  const expected = weightShapes(spec);
  const parameters: ParameterSet = new Map();
  for (const file of await weightFiles(dir)) {
    const reader = await SafetensorsFile.open(file).catch((error: Error) => {
      throw new CheckpointError(error.message);
    });
    try {
      for (const stored of reader.names) {
        const name =
          spec.family === 'gpt2' && !stored.startsWith('transformer.') && stored !== 'lm_head.weight'
            ? `transformer.${stored}`
            : stored;
        if (ignoredTensor.test(name) || (name === 'lm_head.weight' && !expected.has(name))) continue;
        const dims = expected.get(name);
        if (!dims) throw new CheckpointError(`${file}: unexpected tensor ${stored} for ${spec.architecture}`);
        const tensor = hostFromStored(stored, await reader.read(stored), { halfToFloat32: true });
        if (tensor.dims.join() !== dims.join()) {
          throw new CheckpointError(
            `${file}: ${stored} has shape [${tensor.dims.join(', ')}], expected [${dims.join(', ')}]`,
          );
        }
        if (tensor.dtype !== 'float32') {
          throw new CheckpointError(`${file}: ${stored} is ${tensor.dtype}; weights must be floating point`);
        }
        parameters.set(name, tensor);
      }
    } finally {
      await reader.close();
    }
  }
  const missing = [...expected.keys()].filter((name) => !parameters.has(name));
  if (missing.length > 0) {
    throw new CheckpointError(
      `${dir}: missing tensors ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`,
    );
  }
  const generationConfig = (await readJson(join(dir, 'generation_config.json'), false)) as
    | Record<string, unknown>
    | undefined;
  return { spec, rawConfig, parameters, generationConfig };
}

async function weightFiles(dir: string): Promise<string[]> {
  const single = join(dir, 'model.safetensors');
  const indexPath = join(dir, 'model.safetensors.index.json');
  const index = (await readJson(indexPath, false)) as { weight_map?: Record<string, string> } | undefined;
  if (index) {
    if (!index.weight_map || typeof index.weight_map !== 'object')
      throw new CheckpointError(`${indexPath}: no weight_map`);
    return [...new Set(Object.values(index.weight_map))].map((shard) => join(dir, shard));
  }
  if (
    await readFile(single, { flag: 'r' }).then(
      () => true,
      () => false,
    )
  )
    return [single];
  throw new CheckpointError(
    `${dir}: no weights (looked for model.safetensors and model.safetensors.index.json)`,
  );
}

async function readJson(path: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CheckpointError(
      `${path}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CheckpointError(`${path}: invalid JSON (${(error as Error).message})`);
  }
}

/**
 * Writes an HF directory transformers loads unchanged: config.json, model.safetensors (names as given; a tied
 * lm_head is not written), generation_config.json. Built in a sibling temp folder, then renamed into place.
 */
export async function saveCheckpoint(
  dir: string,
  checkpoint: Omit<Checkpoint, 'spec'> & { spec?: CausalLmSpec },
): Promise<void> {
  const staging = join(dirname(dir), `.${basename(dir)}.partial-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await writeFile(join(staging, 'config.json'), `${JSON.stringify(checkpoint.rawConfig, null, 2)}\n`);
  if (checkpoint.generationConfig) {
    await writeFile(
      join(staging, 'generation_config.json'),
      `${JSON.stringify(checkpoint.generationConfig, null, 2)}\n`,
    );
  }
  const count = [...checkpoint.parameters.values()].reduce((sum, t) => sum + elementCount(t.dims), 0);
  await saveParameters(join(staging, 'model.safetensors'), checkpoint.parameters, {
    format: 'pt',
    total_parameters: String(count),
  });
  await rm(dir, { recursive: true, force: true });
  await rename(staging, dir);
}
