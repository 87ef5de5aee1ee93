// Loads a dpoflow config from a YAML/JSON file or an object: environment overrides, validation, local paths
// turned into file:// URIs. Also the canonical digest that is saved with every artifact a config produced.
//
// Precedence, lowest first:
//   1. the file (or object);
//   2. well-known variables: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, DPOFLOW_STORE_URI, AWS_ENDPOINT_URL,
//      AWS_ENDPOINT_URL_S3 (wins over AWS_ENDPOINT_URL), AWS_REGION;
//   3. DPOFLOW__<SECTION>__<KEY>=value, e.g. DPOFLOW__TRAINING__BETA=0.2: '__' separates path segments,
//      segments are lowercased to the config's snake_case keys, the value is parsed as JSON when it parses
//      (numbers, booleans, lists, objects) and kept as a string otherwise; `null` removes the setting (back to
//      its default); a deeper path wins over a shallower one.
// Empty variables count as unset. Credentials are left to the AWS SDK's own variables (AWS_ACCESS_KEY_ID, ...).

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseDocument } from 'yaml';
import { ConfigError, type ConfigIssue, formatPath, formatValue, issuesFromZod } from './errors.ts';
import {
  configJsonSchema,
  configSchema,
  type DpoflowConfig,
  type JsonSchema,
  LOCATION_PATTERN,
} from './schema.ts';

export type Environment = Readonly<Record<string, string | undefined>>;

export interface LoadConfigOptions {
  /** Variables to read overrides from; default process.env. Pass {} to ignore the environment. */
  env?: Environment;
  /** Directory relative local paths are resolved against; default process.cwd(). */
  cwd?: string;
}

/** Reads (when given a path), overrides from the environment, validates. Throws ConfigError. */
export async function loadConfig(
  source: string | object,
  options: LoadConfigOptions = {},
): Promise<DpoflowConfig> {
  if (typeof source !== 'string') return parseConfig(source, options);
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (error) {
    throw new ConfigError(
      [{ path: '', message: `cannot read the file (${(error as Error).message})` }],
      source,
    );
  }
  return parseConfig(parseConfigText(text, source), { ...options, source });
}

/** Validates an already-parsed config (after environment overrides); `source` names it in errors. */
export function parseConfig(
  raw: unknown,
  options: LoadConfigOptions & { source?: string } = {},
): DpoflowConfig {
  const { env = process.env, cwd = process.cwd(), source } = options;
  const { config, origins } = applyEnvOverrides(raw ?? {}, env, source);
  const result = configSchema.safeParse(config);
  if (!result.success) {
    throw new ConfigError(issuesFromZod(result.error.issues, config, configJsonSchema(), origins), source);
  }
  return resolveLocations(result.data, cwd);
}

/** YAML (.yaml, .yml) or JSON (.json) text to a plain value; syntax errors carry file:line:col. */
export function parseConfigText(text: string, fileName: string): unknown {
  const extension = extname(fileName).toLowerCase();
  if (extension === '.yaml' || extension === '.yml') return parseYaml(text, fileName);
  if (extension === '.json') return parseJson(text, fileName);
  throw new ConfigError(
    [
      {
        path: '',
        message: `unsupported file extension ${formatValue(extension)} (expected .yaml, .yml or .json)`,
      },
    ],
    fileName,
  );
}

function parseYaml(text: string, fileName: string): unknown {
  const document = parseDocument(text);
  if (document.errors.length > 0) {
    throw new ConfigError(
      document.errors.map((error) => ({
        path: '',
        // The yaml package appends " at line L, column C:" and a code frame; the position goes in front instead.
        message: `invalid YAML: ${error.message.split(' at line ')[0]}`,
        line: error.linePos?.[0].line ?? 1,
        column: error.linePos?.[0].col ?? 1,
      })),
      fileName,
    );
  }
  return document.toJS();
}

function parseJson(text: string, fileName: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const position = /at position (\d+)/.exec(message);
    const offset = position ? Number(position[1]) : text.length;
    const before = text.slice(0, offset).split('\n');
    const issue: ConfigIssue = {
      path: '',
      message: `invalid JSON: ${message.replace(/ in JSON at position.*$/, '')}`,
      line: before.length,
      column: before[before.length - 1].length + 1,
    };
    throw new ConfigError([issue], fileName);
  }
}

const PREFIX = 'DPOFLOW__';

/** Variables other tools already use, applied before DPOFLOW__*; later entries win. */
const WELL_KNOWN_VARIABLES: ReadonlyArray<readonly [variable: string, path: readonly string[]]> = [
  ['TEMPORAL_ADDRESS', ['temporal', 'address']],
  ['TEMPORAL_NAMESPACE', ['temporal', 'namespace']],
  ['DPOFLOW_STORE_URI', ['store', 'uri']],
  ['AWS_ENDPOINT_URL', ['store', 's3', 'endpoint']],
  ['AWS_ENDPOINT_URL_S3', ['store', 's3', 'endpoint']],
  ['AWS_REGION', ['store', 's3', 'region']],
];

interface Override {
  variable: string;
  path: string[];
  value: unknown;
}

/**
 * A copy of `raw` with the environment's settings applied (see the precedence at the top of this file), and
 * which variable set which dotted path, so errors can name it.
 */
export function applyEnvOverrides(
  raw: unknown,
  env: Environment,
  source?: string,
): { config: unknown; origins: Map<string, string> } {
  const overrides: Override[] = [];
  for (const [variable, path] of WELL_KNOWN_VARIABLES) {
    const value = env[variable];
    if (value) overrides.push({ variable, path: [...path], value });
  }
  const prefixed = Object.keys(env)
    .filter((variable) => variable.toUpperCase().startsWith(PREFIX) && env[variable])
    .map((variable) => ({
      variable,
      path: variable.slice(PREFIX.length).toLowerCase().split('__'),
      value: parseEnvValue(env[variable]!),
    }))
    .sort((a, b) => a.path.length - b.path.length || a.variable.localeCompare(b.variable));
  overrides.push(...prefixed);

  const origins = new Map<string, string>();
  if (overrides.length === 0) return { config: raw, origins };
  if (!isPlainObject(raw)) return { config: raw, origins }; // validation reports the non-object file
  const config = structuredClone(raw);
  const problems: ConfigIssue[] = [];
  for (const override of overrides) {
    const problem = setAt(config, override);
    if (problem) problems.push(problem);
    else origins.set(formatPath(override.path), override.variable);
  }
  if (problems.length > 0) throw new ConfigError(problems, source);
  return { config, origins };
}

function parseEnvValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// Sets (or, for null, deletes) the override's path in `target`, creating objects on the way.
function setAt(
  target: Record<string, unknown>,
  { variable, path, value }: Override,
): ConfigIssue | undefined {
  if (path.some((segment) => segment === '')) {
    return { path: '', message: `cannot apply ${variable}: empty path segment (use '__' between keys only)` };
  }
  let node = target;
  for (let depth = 0; depth < path.length - 1; depth++) {
    const key = path[depth];
    const child = Object.hasOwn(node, key) ? node[key] : undefined;
    if (child === undefined || child === null) {
      if (value === null) return undefined; // nothing to remove
      node[key] = {};
    } else if (!isPlainObject(child)) {
      return {
        path: formatPath(path.slice(0, depth + 1)),
        message: `cannot apply ${variable}: the setting is ${formatValue(child)}, not an object`,
      };
    }
    node = node[key] as Record<string, unknown>;
  }
  const last = path[path.length - 1];
  if (value === null) delete node[last];
  else node[last] = value;
  return undefined;
}

type Path = readonly string[];

let locationPaths: Path[] | undefined;

// Every setting whose schema is a location (schema.ts `location()`), found in the JSON Schema so the list
// cannot fall behind the schema; union branches contribute their own fields (evaluation.reward.uri).
function locationSettings(): Path[] {
  locationPaths ??= collectLocationPaths(configJsonSchema(), []);
  return locationPaths;
}

function collectLocationPaths(node: JsonSchema, path: Path): Path[] {
  if (node.pattern === LOCATION_PATTERN.source) return [path];
  // zod emits object nodes throughout the config's schema, never the boolean shorthand.
  const properties = (node.properties ?? {}) as Record<string, JsonSchema>;
  const found: Path[] = [];
  for (const [key, child] of Object.entries(properties))
    found.push(...collectLocationPaths(child, [...path, key]));
  for (const branch of node.oneOf ?? node.anyOf ?? []) found.push(...collectLocationPaths(branch, path));
  return found;
}

/** `location` as a URI: s3:// and file:// unchanged, local paths made absolute against `cwd` as file:// URIs. */
export function resolveLocation(location: string, cwd: string): string {
  if (location.startsWith('s3://') || location.startsWith('file://')) return location;
  return pathToFileURL(resolve(cwd, location)).href;
}

/** A copy of `config` whose every location is an s3:// or file:// URI (workers may run in other folders). */
export function resolveLocations(config: DpoflowConfig, cwd: string): DpoflowConfig {
  const resolved = structuredClone(config);
  for (const path of locationSettings()) {
    let parent: Record<string, unknown> | undefined = resolved;
    for (const key of path.slice(0, -1)) parent = parent?.[key] as Record<string, unknown> | undefined;
    const key = path[path.length - 1];
    const value = parent?.[key];
    if (parent && typeof value === 'string') parent[key] = resolveLocation(value, cwd);
  }
  return resolved;
}

/** A copy without credentials: what is saved with artifacts and digested. */
export function redactSecrets(config: DpoflowConfig): DpoflowConfig {
  const { access_key_id: _accessKeyId, secret_access_key: _secretAccessKey, ...s3 } = config.store.s3;
  return { ...config, store: { ...config.store, s3 } };
}

/** JSON with object keys sorted at every level, so equal configs give equal text whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    isPlainObject(item)
      ? Object.fromEntries(
          Object.keys(item)
            .sort()
            .map((key) => [key, item[key]]),
        )
      : item,
  );
}

/** sha256 (hex) of the canonical JSON of the config without credentials. */
export function configDigest(config: DpoflowConfig): string {
  return createHash('sha256')
    .update(canonicalJson(redactSecrets(config)))
    .digest('hex');
}
