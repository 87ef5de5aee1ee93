// Sorts failures where they arise: bad input, config or data is non-retryable (Temporal gives up at once and
// reports it); transient I/O stays an ordinary error, so Temporal's retry policy handles it.

import { ApplicationFailure } from '@temporalio/activity';
import { ConfigError } from '../config/errors.ts';
import { isStoreError } from '../store/index.ts';
import { NON_RETRYABLE_TYPES } from './failure-types.ts';

const NON_RETRYABLE: ReadonlySet<string> = new Set(NON_RETRYABLE_TYPES);

export function asActivityFailure(error: unknown): unknown {
  if (error instanceof ApplicationFailure) return error;
  if (isStoreError(error) && !error.retryable) {
    return ApplicationFailure.create({
      message: error.message,
      type: `StoreError.${error.code}`,
      nonRetryable: true,
      cause: error,
    });
  }
  if (error instanceof ConfigError || (error instanceof Error && NON_RETRYABLE.has(error.name))) {
    return ApplicationFailure.create({
      message: error.message,
      type: error.name,
      nonRetryable: true,
      cause: error,
    });
  }
  return error;
}

/** Runs an activity body, rethrowing its failure sorted into retryable or not. */
export async function sortingFailures<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw asActivityFailure(error);
  }
}
