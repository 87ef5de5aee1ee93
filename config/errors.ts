// ConfigError, and the translation of zod issues into one line per problem: the setting's path, what was
// expected (read from the config's JSON Schema, so bounds and choices are stated once) and what was received.

import type { z } from 'zod';
import type { JsonSchema } from './schema.ts';

export interface ConfigIssue {
  /** Dotted path of the setting ('training.beta', 'training.lora.target_modules[0]'); '' for the whole file. */
  path: string;
  /** The problem and the received value, e.g. 'expected a number > 0, received "abc"'. */
  message: string;
  /** Position in the file, for syntax errors. */
  line?: number;
  column?: number;
}

/** A config that cannot be read or is invalid. Not retryable: the same input fails the same way. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly issues: readonly ConfigIssue[];
  /** The file the config came from, when it came from one. */
  readonly source: string | undefined;

  constructor(issues: readonly ConfigIssue[], source?: string) {
    super(renderIssues(issues, source));
    this.issues = issues;
    this.source = source;
  }
}

// Syntax errors read as compiler output (file:line:col: problem); validation problems as a list under the file.
function renderIssues(issues: readonly ConfigIssue[], source: string | undefined): string {
  const lines = issues.map((issue) =>
    issue.line === undefined
      ? `  ${issue.path || '(root)'}: ${issue.message}`
      : `${source ?? '(input)'}:${issue.line}:${issue.column ?? 1}: ${issue.message}`,
  );
  if (issues.every((issue) => issue.line !== undefined)) return lines.join('\n');
  const count = `${issues.length} problem${issues.length === 1 ? '' : 's'}`;
  return `${source ? `${source}: ` : ''}invalid dpoflow config (${count}):\n${lines.join('\n')}`;
}

const MAX_VALUE_CHARS = 80;

/** A received value as it appears in messages: strings quoted, structures as JSON, long ones cut. */
export function formatValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text =
    typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 1)}…` : text;
}

export function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((key, index) => (typeof key === 'number' ? `[${key}]` : `${index ? '.' : ''}${String(key)}`))
    .join('');
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

// zod emits object nodes throughout the config's schema, never the boolean shorthand, hence the casts.
function propertiesOf(node: JsonSchema): Record<string, JsonSchema> {
  return (node.properties ?? {}) as Record<string, JsonSchema>;
}

function branchesOf(node: JsonSchema): JsonSchema[] | undefined {
  return node.oneOf ?? node.anyOf;
}

// The schema node of `path`, following the input through unions: a discriminated union's branch is picked by
// the input's discriminator; when no branch matches, a property is described across all branches (so a bad
// `type` reads "one of sentiment | onnx | http").
function schemaAt(root: JsonSchema, path: readonly PropertyKey[], input: unknown): JsonSchema | undefined {
  let node: JsonSchema | undefined = root;
  for (let depth = 0; depth < path.length && node; depth++) {
    const key = path[depth];
    const branches = branchesOf(node);
    if (branches) {
      const here = valueAt(input, path.slice(0, depth));
      node = branches.find((branch) => branchMatches(branch, here)) ?? mergeBranches(branches, String(key));
    }
    node = typeof key === 'number' ? (node.items as JsonSchema | undefined) : propertiesOf(node)[String(key)];
  }
  return node;
}

// Like schemaAt, but a union resolves to the branch the input chose: the object whose keys are known.
function objectAt(root: JsonSchema, path: readonly PropertyKey[], input: unknown): JsonSchema | undefined {
  const node = schemaAt(root, path, input);
  const branches = node && branchesOf(node);
  if (!branches) return node;
  const value = valueAt(input, path);
  return branches.find((branch) => branchMatches(branch, value));
}

function branchMatches(branch: JsonSchema, value: unknown): boolean {
  const constants = Object.entries(propertiesOf(branch)).filter(
    ([, property]) => property.const !== undefined,
  );
  return (
    constants.length > 0 && constants.every(([key, property]) => valueAt(value, [key]) === property.const)
  );
}

function mergeBranches(branches: JsonSchema[], key: string): JsonSchema {
  const properties = branches
    .map((branch) => propertiesOf(branch)[key])
    .filter((property) => property !== undefined);
  const constants = properties.map((property) => property.const);
  if (constants.length > 0 && constants.every((constant) => constant !== undefined)) {
    return { properties: { [key]: { type: 'string', enum: constants } } };
  }
  return { properties: properties.length ? { [key]: properties[0] } : {} };
}

const SAFE_INTEGER_BOUND = Number.MAX_SAFE_INTEGER;

/** What a schema node accepts, in words: "a number > 0", "an integer >= 1", "one of cpu | cuda". */
export function describeExpected(node: JsonSchema): string {
  if (Array.isArray(node.enum)) return `one of ${node.enum.join(' | ')}`;
  if ('const' in node) return JSON.stringify(node.const);
  const branches = branchesOf(node);
  if (branches) {
    const tags = branches.map((branch) => propertiesOf(branch).type?.const);
    return tags.every((tag) => tag !== undefined) ? `an object with type ${tags.join(' | ')}` : 'an object';
  }
  switch (node.type) {
    case 'number':
    case 'integer': {
      const bounds: string[] = [];
      if (typeof node.minimum === 'number' && node.minimum > -SAFE_INTEGER_BOUND)
        bounds.push(`>= ${node.minimum}`);
      if (typeof node.exclusiveMinimum === 'number') bounds.push(`> ${node.exclusiveMinimum}`);
      if (typeof node.maximum === 'number' && node.maximum < SAFE_INTEGER_BOUND)
        bounds.push(`<= ${node.maximum}`);
      if (typeof node.exclusiveMaximum === 'number') bounds.push(`< ${node.exclusiveMaximum}`);
      return [node.type === 'integer' ? 'an integer' : 'a number', bounds.join(' and ')]
        .filter(Boolean)
        .join(' ');
    }
    case 'string':
      return node.minLength ? 'a non-empty string' : 'a string';
    case 'boolean':
      return 'true or false';
    case 'array': {
      const items = node.items as JsonSchema | undefined;
      const itemType = typeof items?.type === 'string' ? ` of ${items.type}s` : '';
      const count = node.minItems;
      const minimum =
        typeof count === 'number' && count > 0 ? ` with at least ${count} item${count === 1 ? '' : 's'}` : '';
      return `a list${itemType}${minimum}`;
    }
    case 'object':
      return 'an object (key: value mapping)';
    default:
      return 'a valid value';
  }
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j] + 1,
        current[j - 1] + 1,
        previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length];
}

/** The known key closest to `key`, when it is a plausible typo (case, dashes, or a few edits). */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  const normalized = key.toLowerCase().replaceAll('-', '_');
  const allowed = Math.max(2, Math.floor(normalized.length / 3));
  let best: { key: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = editDistance(normalized, candidate);
    if (distance <= allowed && (!best || distance < best.distance)) best = { key: candidate, distance };
  }
  return best?.key;
}

// Sections whose properties include `key`, for "it belongs under evaluation" hints.
function sectionsWithKey(root: JsonSchema, key: string, prefix = ''): string[] {
  const found: string[] = [];
  for (const [name, child] of Object.entries(propertiesOf(root))) {
    const path = prefix ? `${prefix}.${name}` : name;
    for (const node of [child, ...(branchesOf(child) ?? [])]) {
      if (Object.hasOwn(propertiesOf(node), key)) found.push(path);
      found.push(...sectionsWithKey(node, key, path));
    }
  }
  return [...new Set(found)];
}

function unknownKeyMessage(root: JsonSchema, parent: JsonSchema | undefined, key: string): string {
  const known = parent ? Object.keys(propertiesOf(parent)) : [];
  const suggestion = nearestKey(key, known);
  if (suggestion) return `unknown key (did you mean ${suggestion}?)`;
  const sections = sectionsWithKey(root, key);
  if (sections.length) return `unknown key (it belongs under ${sections.join(' or ')})`;
  return `unknown key (expected one of ${known.join(', ')})`;
}

/**
 * One ConfigIssue per problem zod found in `input`. `schema` is the config's JSON Schema (for expected values
 * and known keys); `origins` maps dotted paths set from the environment to the variable that set them.
 */
export function issuesFromZod(
  zodIssues: readonly z.core.$ZodIssue[],
  input: unknown,
  schema: JsonSchema,
  origins: ReadonlyMap<string, string> = new Map(),
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const issue of zodIssues) {
    if (issue.code === 'unrecognized_keys') {
      const parent = objectAt(schema, issue.path, input);
      for (const key of issue.keys) {
        issues.push({
          path: formatPath([...issue.path, key]),
          message: unknownKeyMessage(schema, parent, key),
        });
      }
    } else {
      issues.push({ path: formatPath(issue.path), message: describeIssue(issue, input, schema) });
    }
  }
  return issues.map((issue) => withOrigin(issue, origins));
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown, schema: JsonSchema): string {
  const received = valueAt(input, issue.path);
  const node = schemaAt(schema, issue.path, input);
  switch (issue.code) {
    case 'custom':
      // Refinements in schema.ts write the whole message, received value included.
      return issue.message;
    case 'invalid_format':
      return `${issue.message}, received ${formatValue(received)}`;
    case 'invalid_type':
    case 'invalid_value':
    case 'invalid_union':
    case 'too_small':
    case 'too_big':
    case 'not_multiple_of':
      if (received === undefined) {
        const about =
          typeof node?.description === 'string'
            ? node.description
            : node && `expected ${describeExpected(node)}`;
        return `missing required setting${about ? ` — ${about}` : ''}`;
      }
      return `expected ${node ? describeExpected(node) : 'a valid value'}, received ${formatValue(received)}`;
    default:
      return `${issue.message}, received ${formatValue(received)}`;
  }
}

// Problems in a setting that came from an environment variable name that variable, since the file looks fine;
// the deepest variable covering the path is the one that set it.
function withOrigin(issue: ConfigIssue, origins: ReadonlyMap<string, string>): ConfigIssue {
  let origin: { path: string; variable: string } | undefined;
  for (const [path, variable] of origins) {
    const covers =
      issue.path === path || issue.path.startsWith(`${path}.`) || issue.path.startsWith(`${path}[`);
    if (covers && (!origin || path.length > origin.path.length)) origin = { path, variable };
  }
  return origin ? { ...issue, message: `${issue.message} (set by ${origin.variable})` } : issue;
}
