// docs/configuration.md is generated from the config schema; this fails when the schema changed and the file
// was not regenerated (`npm run docs`), and checks the generator covers every setting.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { configReferenceMarkdown } from '../../config/reference.ts';

test('docs/configuration.md is up to date with config/schema.ts', async () => {
  const committed = await readFile(join(import.meta.dirname, '..', '..', 'docs', 'configuration.md'), 'utf8');
  assert.equal(committed, configReferenceMarkdown(), 'run `npm run docs` and commit docs/configuration.md');
});

test('the reference lists every setting with its default and description', () => {
  const reference = configReferenceMarkdown();
  for (const row of [
    '| `training.beta` | `0.1` | a number > 0 | β: strength of the KL penalty towards the reference model |',
    '| `model.uri` | (required) |',
    '| `evaluation.reward.timeout_ms` | `10000` | an integer >= 1 |',
    '| `temporal.training_heartbeat_timeout_s` | `120` |',
  ])
    assert.ok(reference.includes(row), `missing: ${row}`);
});
