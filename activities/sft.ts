// Optional stage: supervised fine-tuning of the base model on stages.sft.dataset, so that the SFT model serves
// as π_ref and as the policy's start (the paper's first step). Writes sft/<key>/ like a training stage
// (checkpoints, metrics.jsonl, model/); the key digests the base weights, the data, the tokenizer and settings.

import { join } from 'node:path';
import type { DpoflowConfig, TrainingConfig } from '../config/schema.ts';
import { localFile } from '../store/from-config.ts';
import { loadTokenizer } from '../text/tokenizer.ts';
import { readPreferenceFile } from '../trainer/dataset.ts';
import { prepareSftExamples, trainSft } from '../trainer/sft.ts';
import { tokenizerDigests, tokenizerFolder } from './prepare-data.ts';
import { modelDigest } from './reference-logprobs.ts';
import { digest, fileDigest, type StageContext } from './stage.ts';
import { padTokenId, type TrainedPolicy, trainAndExport, withModelFolder } from './train-policy.ts';

/** The training settings of the SFT stage: the run's, with the stage's learning rate and epochs, no LoRA. */
export function sftTraining(config: DpoflowConfig): TrainingConfig {
  const { lora: _lora, ...training } = config.training;
  return {
    ...training,
    learning_rate: config.stages.sft.learning_rate,
    num_train_epochs: config.stages.sft.num_train_epochs,
    max_steps: -1,
  };
}

export async function superviseFineTune(
  config: DpoflowConfig,
  context: StageContext,
): Promise<TrainedPolicy> {
  const dataset = config.stages.sft.dataset;
  if (!dataset) throw new Error('stages.sft.dataset is required when stages.sft.enabled is true');
  return withModelFolder(config.model.uri, 'dpoflow-sft-', context, async (modelDir, scratch) => {
    const dataFile = await localFile(dataset, join(scratch, 'data'), context.s3);
    const tokenizerDir = await tokenizerFolder(config, join(scratch, 'tokenizer'), context);
    const training = sftTraining(config);
    const key = digest({
      format: 'dpoflow.sft',
      version: 1,
      model: await modelDigest(modelDir),
      data: await fileDigest(dataFile),
      tokenizer: await tokenizerDigests(tokenizerDir),
      chat_template: config.model.chat_template ?? null,
      training,
      seed: config.seed,
    });
    return trainAndExport(`sft/${key}`, modelDir, context, { checkpoints: 'resume' }, async (base, hooks) => {
      const tokenizer = await loadTokenizer(tokenizerDir, { chatTemplate: config.model.chat_template });
      const raw = await readPreferenceFile(dataFile, 'auto');
      const { examples } = prepareSftExamples({ ...raw, source: dataset }, tokenizer, {
        ...training,
        maxInvalidRows: config.dataset.max_invalid_rows,
      });
      return trainSft({
        spec: base.spec,
        parameters: base.parameters,
        training,
        seed: config.seed,
        train: examples,
        padTokenId: padTokenId(base),
        runtime: context.runtime,
        configDigest: key,
        signal: context.signal,
        ...hooks,
      });
    });
  });
}
