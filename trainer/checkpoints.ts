// Trainer checkpoints in the artifact store: `<prefix>/checkpoint-<step>/` holds model.safetensors (trainable
// tensors), optimizer.safetensors and trainer_state.json, and its manifest.json is written last, so a
// checkpoint either exists whole or not at all (a crash mid-save leaves only an unpublished prefix).

import { parametersFromSafetensors, parametersToSafetensors } from '../engine/parameters.ts';
import type { ArtifactStore } from '../store/types.ts';
import { type TrainerCheckpoint, trainerStateSchema } from './state.ts';

const FORMAT = 'dpoflow.trainer-checkpoint';
const files = {
  model: 'model.safetensors',
  optimizer: 'optimizer.safetensors',
  state: 'trainer_state.json',
} as const;

export function checkpointPrefix(prefix: string, step: number): string {
  return `${prefix}/checkpoint-${step}`;
}

export async function saveTrainerCheckpoint(
  store: ArtifactStore,
  prefix: string,
  checkpoint: TrainerCheckpoint,
): Promise<string> {
  const at = checkpointPrefix(prefix, checkpoint.state.global_step);
  const bodies: [string, Uint8Array][] = [
    [files.model, parametersToSafetensors(checkpoint.parameters)],
    [files.optimizer, parametersToSafetensors(checkpoint.optimizerState)],
    [files.state, new TextEncoder().encode(`${JSON.stringify(checkpoint.state, null, 2)}\n`)],
  ];
  for (const [name, body] of bodies) await store.put(`${at}/${name}`, body);
  await store.publishManifest(at, {
    format: FORMAT,
    formatVersion: 1,
    files: bodies.map(([path, body]) => ({ path, bytes: body.byteLength })),
    meta: { global_step: checkpoint.state.global_step },
  });
  return at;
}

/** Steps of the published checkpoints under prefix, ascending. */
export async function listTrainerCheckpoints(store: ArtifactStore, prefix: string): Promise<number[]> {
  const steps: number[] = [];
  for await (const entry of store.list(`${prefix}/checkpoint-`)) {
    const match = /\/checkpoint-(\d+)\/manifest\.json$/.exec(entry.key);
    if (match) steps.push(Number(match[1]));
  }
  return steps.sort((a, b) => a - b);
}

export async function loadTrainerCheckpoint(
  store: ArtifactStore,
  prefix: string,
  step: number,
): Promise<TrainerCheckpoint> {
  const at = checkpointPrefix(prefix, step);
  const manifest = await store.readManifest(at);
  if (manifest?.format !== FORMAT) throw new Error(`no published trainer checkpoint at ${store.uri(at)}`);
  const [model, optimizer, state] = await Promise.all(
    [files.model, files.optimizer, files.state].map((name) => store.get(`${at}/${name}`)),
  );
  return {
    parameters: parametersFromSafetensors(model, { source: store.uri(`${at}/${files.model}`) }).parameters,
    optimizerState: parametersFromSafetensors(optimizer, { source: store.uri(`${at}/${files.optimizer}`) })
      .parameters,
    state: trainerStateSchema.parse(JSON.parse(new TextDecoder().decode(state))),
  };
}

/** The newest published checkpoint under prefix, or undefined. */
export async function loadLatestTrainerCheckpoint(
  store: ArtifactStore,
  prefix: string,
): Promise<TrainerCheckpoint | undefined> {
  const steps = await listTrainerCheckpoints(store, prefix);
  return steps.length ? loadTrainerCheckpoint(store, prefix, steps.at(-1)!) : undefined;
}
