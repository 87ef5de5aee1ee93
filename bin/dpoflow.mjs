#!/usr/bin/env node
// The `dpoflow` command. dpoflow runs its TypeScript through tsx (no build step); registering it here, from
// this file's own location, makes the command work from any folder.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
