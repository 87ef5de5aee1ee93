// `dpoflow <command> [options]`: the command registry, help, and exit codes. Commands are thin: each parses its
// options and calls into the library.

import { apiCommand } from './api.ts';
import { type Command, exitCodes, UsageError } from './command.ts';
import { devCommand } from './dev.ts';
import { runCommands } from './runs.ts';
import { scoreCommand } from './score.ts';
import { trainCommand } from './train.ts';
import { workerCommand } from './worker.ts';

const commands: Command[] = [
  ...runCommands,
  devCommand,
  workerCommand,
  apiCommand,
  trainCommand,
  scoreCommand,
];

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'usage: dpoflow <command> [options]',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "dpoflow <command> --help shows a command's options.",
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? exitCodes.ok : exitCodes.usage;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    console.error(`dpoflow: unknown command "${name}"\n\n${help()}`);
    return exitCodes.usage;
  }
  if (args.includes('--help') || args.includes('-h')) {
    console.log(command.usage);
    return exitCodes.ok;
  }
  try {
    return await command.run(args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`dpoflow ${name}: ${error.message}\n\n${command.usage}`);
      return exitCodes.usage;
    }
    console.error(`dpoflow ${name}: ${(error as Error).message}`);
    return exitCodes.failure;
  }
}
