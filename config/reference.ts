// The configuration reference (docs/configuration.md), generated from the config's JSON Schema, so every
// setting's default, accepted values and description come from config/schema.ts and nowhere else.
// `npm run docs` rewrites the file; test/config/reference.test.ts fails when it is out of date.

import { describeExpected } from './errors.ts';
import { configJsonSchema, type JsonSchema } from './schema.ts';

export function configReferenceMarkdown(): string {
  const root = configJsonSchema();
  const lines = [
    '# Configuration reference',
    '',
    '<!-- Generated from config/schema.ts by `npm run docs`; edit the schema, not this file. -->',
    '',
    'Configs are YAML or JSON. Every setting can also come from the environment as',
    '`DPOFLOW__SECTION__KEY` (e.g. `DPOFLOW__TRAINING__BETA=0.2`). Settings without a default are required.',
    '',
  ];
  const rows: string[][] = [];
  const visit = (node: JsonSchema, path: string[]) => {
    const properties = (node.properties ?? {}) as Record<string, JsonSchema>;
    const required = new Set((node.required as string[] | undefined) ?? []);
    for (const [key, child] of Object.entries(properties)) {
      const childPath = [...path, key];
      const branches = (child.oneOf ?? child.anyOf) as JsonSchema[] | undefined;
      if (child.type === 'object' && child.properties && !branches) {
        visit(child, childPath);
        continue;
      }
      if (branches?.every((branch) => branch.type === 'object' && branch.properties)) {
        for (const branch of branches) {
          const tag = ((branch.properties as Record<string, JsonSchema>).type?.const as string) ?? '';
          rows.push([
            `${childPath.join('.')}`,
            '',
            tag ? `type ${tag}` : 'an object',
            String(branch.description ?? ''),
          ]);
          visit(branch, childPath);
        }
        continue;
      }
      const fallback = required.has(key) ? '(required)' : '';
      rows.push([
        childPath.join('.'),
        'default' in child ? `\`${JSON.stringify(child.default)}\`` : fallback,
        describeExpected(child),
        String(child.description ?? ''),
      ]);
    }
  };
  visit(root, []);
  const sections = new Map<string, string[][]>();
  for (const row of rows) {
    const section = row[0].includes('.') ? row[0].split('.')[0] : '(top level)';
    sections.set(section, [...(sections.get(section) ?? []), row]);
  }
  for (const [section, sectionRows] of sections) {
    const description =
      ((root.properties as Record<string, JsonSchema>)[section]?.description as string) ?? '';
    lines.push(`## ${section}`, '', ...(description ? [description, ''] : []));
    lines.push('| setting | default | accepts | description |', '| --- | --- | --- | --- |');
    for (const row of sectionRows)
      lines.push(`| \`${row[0]}\` | ${row.slice(1).map(escapeCell).join(' | ')} |`);
    lines.push('');
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

function escapeCell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}
