// Runs ONE benchmark case in this process and prints its JSON record: `node --import tsx bench/case-runner.ts
// --case NAME --threads T --iters N --warmup W`. bench/run.ts starts one process per case so each case's peak
// resident memory is its own, as the PyTorch peer does.

import { parseArgs } from 'node:util';
import { benchCases } from './cases.ts';

const { values } = parseArgs({
  options: {
    case: { type: 'string' },
    threads: { type: 'string', default: '2' },
    iters: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
  },
});
const build = benchCases[values.case ?? ''];
if (!build)
  throw new Error(`--case must be one of ${Object.keys(benchCases).join(', ')}, got ${values.case}`);
const threads = Number(values.threads);
const rssAfterImportMiB = process.resourceUsage().maxRSS / 1024;
const { step, describe, release } = await build({ threads });

const losses: number[] = [];
for (let i = 0; i < Number(values.warmup); i++) losses.push(await step());
const times: number[] = [];
for (let i = 0; i < Number(values.iters); i++) {
  const started = performance.now();
  losses.push(await step());
  times.push((performance.now() - started) / 1000);
}
await release();
const medianSeconds = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];
const record = {
  median_s: medianSeconds,
  times_s: times,
  ...describe(medianSeconds),
  ...(Number.isFinite(losses[0]) ? { loss_first: losses[0], loss_last: losses.at(-1) } : {}),
  peak_rss_mib: process.resourceUsage().maxRSS / 1024,
  rss_after_import_mib: rssAfterImportMiB,
};
process.stdout.write(`${JSON.stringify(record)}\n`);
