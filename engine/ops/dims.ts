// Symbolic dims for build-time shape inference: a dim is a static size or a named dynamic size
// ('batch', 'seq'); reshapes that merge dims give products ('batch*seq'), slices give derived names ('seq-1').

export type Dim = number | string;

/** A dim as coefficient × product of named factors; static dims have no factors. */
interface Monomial {
  coefficient: number;
  factors: string[]; // sorted, so equal products compare equal
}

const plainName = /^[A-Za-z_][\w.]*$/;

/** Wraps a derived name in parentheses so it reads as one factor inside a product. */
export function atom(dim: Dim): string {
  const text = String(dim);
  return plainName.test(text) || /^\d+$/.test(text) ? text : `(${text})`;
}

function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')') depth--;
    else if (text[i] === '*' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

function unwrap(factor: string): string {
  return factor.startsWith('(') && factor.endsWith(')') ? factor.slice(1, -1) : factor;
}

function toMonomial(dim: Dim): Monomial {
  if (typeof dim === 'number') return { coefficient: dim, factors: [] };
  let coefficient = 1;
  const factors: string[] = [];
  for (const part of splitTopLevel(dim)) {
    const factor = part.trim();
    if (/^\d+$/.test(factor)) coefficient *= Number(factor);
    else factors.push(unwrap(factor));
  }
  return { coefficient, factors: factors.sort() };
}

function fromMonomial({ coefficient, factors }: Monomial): Dim {
  if (factors.length === 0 || coefficient === 0) return coefficient;
  if (factors.length === 1 && coefficient === 1) return factors[0];
  const named = factors.map(atom).join('*');
  return coefficient === 1 ? named : `${coefficient}*${named}`;
}

/** Canonical form, so 'seq*batch' and 'batch*seq' are the same dim. */
export function canonicalDim(dim: Dim): Dim {
  return fromMonomial(toMonomial(dim));
}

export function dimsEqual(a: Dim, b: Dim): boolean {
  return canonicalDim(a) === canonicalDim(b);
}

export function shapesEqual(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((dim, i) => dimsEqual(dim, b[i]));
}

export function isStaticShape(dims: readonly Dim[]): dims is readonly number[] {
  return dims.every((dim) => typeof dim === 'number');
}

export function dimProduct(dims: readonly Dim[]): Dim {
  let coefficient = 1;
  const factors: string[] = [];
  for (const dim of dims) {
    const monomial = toMonomial(dim);
    coefficient *= monomial.coefficient;
    factors.push(...monomial.factors);
  }
  return fromMonomial({ coefficient, factors: factors.sort() });
}

/** numerator / denominator when it divides exactly as a monomial, else undefined. */
export function dimQuotient(numerator: Dim, denominator: Dim): Dim | undefined {
  const top = toMonomial(numerator);
  const bottom = toMonomial(denominator);
  if (bottom.coefficient === 0 || top.coefficient % bottom.coefficient !== 0) return undefined;
  const factors = [...top.factors];
  for (const factor of bottom.factors) {
    const at = factors.indexOf(factor);
    if (at < 0) return undefined;
    factors.splice(at, 1);
  }
  return fromMonomial({ coefficient: top.coefficient / bottom.coefficient, factors });
}

/** Sum of dims (concat): static sums stay static, equal products add coefficients, else a derived name. */
export function dimSum(dims: readonly Dim[]): Dim {
  if (isStaticShape(dims)) return dims.reduce((total, dim) => total + dim, 0);
  const monomials = dims.map(toMonomial);
  const key = monomials[0].factors.join('*');
  if (monomials.every((m) => m.factors.join('*') === key)) {
    const coefficient = monomials.reduce((total, m) => total + m.coefficient, 0);
    return fromMonomial({ coefficient, factors: monomials[0].factors });
  }
  return dims.map(atom).join('+');
}

export function formatDims(dims: readonly Dim[]): string {
  return `[${dims.join(', ')}]`;
}

/**
 * numpy/ONNX broadcasting of several shapes, aligned on the right. A named dim broadcasts only with
 * itself or a static 1: two different names (or a name and a static size) may differ at run time.
 */
export function broadcastShapes(opName: string, shapes: readonly (readonly Dim[])[]): Dim[] {
  const rank = Math.max(...shapes.map((shape) => shape.length));
  const result: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let dim: Dim = 1;
    for (const shape of shapes) {
      const candidate = shape[shape.length - rank + i] ?? 1;
      if (candidate === 1 || dimsEqual(candidate, dim)) continue;
      if (dim !== 1) {
        const listed = shapes.map(formatDims).join(' and ');
        throw new ShapeError(
          `${opName}: cannot broadcast ${listed}: dim ${dim} vs ${candidate} at axis ${i}`,
        );
      }
      dim = candidate;
    }
    result.push(dim);
  }
  return result;
}

/** A build-time shape or type error; the message names the op and the offending shapes. */
export class ShapeError extends Error {
  override name = 'ShapeError';
}

/** Resolves a possibly negative axis against a rank, naming the op on failure. */
export function normalizeAxis(opName: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new ShapeError(`${opName}: axis ${axis} out of range for rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

export function normalizeAxes(opName: string, axes: readonly number[], rank: number): number[] {
  const normalized = axes.map((axis) => normalizeAxis(opName, axis, rank));
  if (new Set(normalized).size !== normalized.length) {
    throw new ShapeError(`${opName}: repeated axis in [${axes.join(', ')}]`);
  }
  return normalized.sort((a, b) => a - b);
}
