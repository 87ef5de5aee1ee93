// `npm run docs`: rewrites docs/configuration.md from the config schema.

import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { configReferenceMarkdown } from './reference.ts';

const target = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));
await writeFile(target, configReferenceMarkdown());
console.log(`wrote ${target}`);
