// The demo's built-in data, modelled on the paper's IMDb task in miniature: short movie-review sentences
// (half positive, half negative) for supervised fine-tuning, and review openings as prompts. Generated from
// templates with a fixed seed, so nothing is downloaded and every run sees the same data.

import { mulberry32 } from '../engine/random.ts';

export const SUBJECTS = [
  'the movie',
  'this film',
  'the plot',
  'the acting',
  'the story',
  'the ending',
  'the cast',
  'the music',
];
const POSITIVE = [
  'was great',
  'was good',
  'is wonderful',
  'was brilliant',
  'is fun',
  'was perfect',
  'was lovely',
  'is superb',
];
const NEGATIVE = [
  'was bad',
  'was awful',
  'is boring',
  'was terrible',
  'is dull',
  'was poor',
  'was weak',
  'is a mess',
];

/** `count` review sentences as {text} rows, positive and negative in equal measure. */
export function reviewRows(count: number, seed = 1): { text: string }[] {
  const uniform = mulberry32(seed);
  const pick = (items: readonly string[]) => items[Math.floor(uniform() * items.length)];
  return Array.from({ length: count }, () => ({
    text: `${pick(SUBJECTS)} ${pick(uniform() < 0.5 ? POSITIVE : NEGATIVE)}.`,
  }));
}

/** The prompts completions are sampled from: every subject, as the start of a review. */
export function promptRows(): { prompt: string }[] {
  return SUBJECTS.map((prompt) => ({ prompt }));
}
