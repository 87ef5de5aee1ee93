// `npm run bench`: times each case through ONNX Runtime (one process per case) and the same cases in PyTorch
// eager (bench/torch_peer.py, skipped with the reason when no torch venv can be made), then prints one table:
// time per step, GFLOP/s, fraction of the matmul peak measured in this run, ratio to PyTorch, peak memory.
// Options: --threads N (2), --iters N (5), --warmup N (2), --case NAME[,NAME…] (all), --json FILE, --no-peer.

import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { benchCases } from './cases.ts';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    iters: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    case: { type: 'string' },
    json: { type: 'string' },
    'no-peer': { type: 'boolean', default: false },
  },
});
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const cases = values.case ? values.case.split(',') : Object.keys(benchCases);
/** Our case name → the torch peer's (its block case has an eager and an SDPA variant). */
const peerCase: Record<string, string[]> = {
  matmul_peak: ['matmul_peak'],
  block_step: ['block_step_eager', 'block_step_sdpa'],
  model_step: ['model_step'],
  score_standard: ['score_standard'],
  score_gpt2_small: ['score_gpt2_small'],
  decode_standard: ['decode_standard'],
  decode_gpt2_small: ['decode_gpt2_small'],
};
type CaseRecord = Record<string, unknown> & { median_s: number; gflops?: number; peak_rss_mib: number };

function runJson(command: string, args: string[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.once('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out))
        : reject(new Error(`${command} ${args.join(' ')} exited ${code}`)),
    );
  });
}

const common = ['--threads', values.threads!, '--iters', values.iters!, '--warmup', values.warmup!];
const ours: Record<string, CaseRecord> = {};
if (!cases.includes('matmul_peak')) cases.unshift('matmul_peak'); // the yardstick is always measured
for (const name of cases) {
  console.error(`onnxruntime: ${name}…`);
  ours[name] = (await runJson(process.execPath, [
    '--import',
    'tsx',
    here('./case-runner.ts'),
    '--case',
    name,
    ...common,
  ])) as CaseRecord;
}

let peer: { cases: Record<string, CaseRecord>; torch_version: string } | undefined;
let peerSkipped: string | undefined;
if (values['no-peer']) {
  peerSkipped = '--no-peer';
} else {
  try {
    const { stdout } = await promisify(execFile)('bash', [here('./setup-venv.sh')], { timeout: 30 * 60_000 });
    const python = stdout.trim().split('\n').at(-1)!;
    const merged: Record<string, CaseRecord> = {};
    let version = '';
    for (const name of cases) {
      for (const torchCase of peerCase[name] ?? []) {
        console.error(`torch: ${torchCase}…`);
        const report = (await runJson(python, [here('./torch_peer.py'), '--case', torchCase, ...common])) as {
          cases: Record<string, CaseRecord>;
          torch_version: string;
        };
        Object.assign(merged, report.cases);
        version = report.torch_version;
      }
    }
    peer = { cases: merged, torch_version: version };
  } catch (error) {
    peerSkipped = `PyTorch peer unavailable: ${(error as Error).message.split('\n')[0]}`;
  }
}

const peakGflops = ours.matmul_peak.gflops!;
/** Tokens processed per second (training and scoring) or new tokens generated per second (decoding). */
const tokensPerSecond = (record: CaseRecord) =>
  String(((record.tokens_per_s ?? record.new_tokens_per_s) as number | undefined)?.toFixed(0) ?? '');
const rows: string[][] = [
  [
    'case',
    'engine',
    's/step',
    'tokens/s',
    'GFLOP/s',
    '% of ORT matmul peak',
    'vs torch (×, >1 = faster)',
    'peak RSS MiB',
  ],
];
for (const name of cases) {
  const record = ours[name];
  const torchName = peerCase[name]?.[0];
  const torchRecord = torchName ? peer?.cases[torchName] : undefined;
  rows.push([
    name,
    'onnxruntime',
    record.median_s.toFixed(4),
    tokensPerSecond(record),
    record.gflops?.toFixed(1) ?? '',
    record.gflops ? `${((100 * record.gflops) / peakGflops).toFixed(0)}%` : '',
    torchRecord ? (torchRecord.median_s / record.median_s).toFixed(2) : '',
    record.peak_rss_mib.toFixed(0),
  ]);
  for (const torchCase of peerCase[name] ?? []) {
    const other = peer?.cases[torchCase];
    if (!other || 'error' in other) continue;
    rows.push([
      torchCase,
      `torch ${peer!.torch_version}`,
      other.median_s.toFixed(4),
      tokensPerSecond(other),
      other.gflops?.toFixed(1) ?? '',
      other.gflops ? `${((100 * other.gflops) / peakGflops).toFixed(0)}%` : '',
      '',
      other.peak_rss_mib.toFixed(0),
    ]);
  }
}
const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
const line = (row: string[]) => `| ${row.map((cell, column) => cell.padEnd(widths[column])).join(' | ')} |`;
console.log(
  `threads ${values.threads}, median of ${values.iters} after ${values.warmup} warmup; matmul peak ${peakGflops.toFixed(1)} GFLOP/s (ORT, 2048³ fp32)`,
);
console.log([line(rows[0]), line(widths.map((w) => '-'.repeat(w))), ...rows.slice(1).map(line)].join('\n'));
if (peerSkipped) console.log(`(${peerSkipped})`);
if (values.json) writeFileSync(values.json, JSON.stringify({ ours, peer, peerSkipped }, null, 2));
