// The one error type the artifact store throws: a code activities can branch on, whether a retry can help,
// and a message naming the URI or endpoint involved plus a hint.

export type StoreErrorCode =
  | 'NotFound' // no object under the key (or no manifest for a multi-object artifact)
  | 'NoSuchBucket' // the S3 bucket of the store's root does not exist
  | 'AccessDenied' // credentials rejected, missing, or not allowed to touch the object
  | 'Unreachable' // the endpoint or disk could not be reached: network error, timeout
  | 'InvalidKey' // malformed key or URI: `..` segments, absolute key, NUL byte, URI outside the root
  | 'Integrity' // content is not what it claims: size or sha256 mismatch, JSON that fails its schema
  | 'Unknown'; // anything else; retryable when the service said so (5xx, throttling)

/** Whether retrying the same call can succeed, per code; `Unknown` is decided where the error is sorted. */
const retryableByCode: Record<Exclude<StoreErrorCode, 'Unknown'>, boolean> = {
  NotFound: false,
  NoSuchBucket: false,
  AccessDenied: false,
  Unreachable: true,
  InvalidKey: false,
  Integrity: false,
};

export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;
  /** True when the same call may succeed later (Temporal may retry); false for bad input or config. */
  readonly retryable: boolean;

  constructor(code: StoreErrorCode, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? (code === 'Unknown' ? false : retryableByCode[code]);
  }
}

export function isStoreError(error: unknown, code?: StoreErrorCode): error is StoreError {
  return error instanceof StoreError && (code === undefined || error.code === code);
}

const networkCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ECONNABORTED',
]);

/** The network error code of an error or its cause, when it is one (connection refused, reset, DNS, timeout). */
export function networkErrorCode(error: unknown): string | undefined {
  const { code, cause } = error as { code?: string; cause?: { code?: string } };
  return [code, cause?.code].find((candidate) => candidate !== undefined && networkCodes.has(candidate));
}

/** Sorts a Node fs (or mid-stream network) error about `uri` into a StoreError. */
export function fromNodeError(error: unknown, uri: string): StoreError {
  if (error instanceof StoreError) return error;
  const code = (error as NodeJS.ErrnoException).code ?? 'no code';
  const cause = { cause: error };
  switch (code) {
    case 'ENOENT':
      return new StoreError('NotFound', `${uri}: no such object or file`, cause);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new StoreError(
        'AccessDenied',
        `${uri}: permission denied (${code}); check owner and mode`,
        cause,
      );
    case 'ENOTDIR':
    case 'EEXIST':
    case 'EISDIR':
      return new StoreError(
        'InvalidKey',
        `${uri}: clashes with an existing object or folder (${code})`,
        cause,
      );
    case 'ENAMETOOLONG':
      return new StoreError('InvalidKey', `${uri}: a path segment is too long for this filesystem`, cause);
    case 'ENOSPC':
    case 'EDQUOT':
      return new StoreError('Unknown', `${uri}: disk full (${code})`, { ...cause, retryable: false });
  }
  if (networkErrorCode(error))
    return new StoreError(
      'Unreachable',
      `${uri}: connection lost mid-stream (${networkErrorCode(error)})`,
      cause,
    );
  return new StoreError('Unknown', `${uri}: ${(error as Error).message ?? String(error)} (${code})`, {
    ...cause,
    retryable: code === 'EIO',
  });
}
