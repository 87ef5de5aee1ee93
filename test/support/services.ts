// What tests know of the services test/run.ts started: env var names and typed accessors that skip loudly
// (or fail under CI=true) when a service is unavailable.

import type { TestContext } from 'node:test';

export const serviceEnv = {
  temporalAddress: 'DPOFLOW_TEST_TEMPORAL_ADDRESS',
  temporalUnavailable: 'DPOFLOW_TEST_TEMPORAL_UNAVAILABLE',
  s3Endpoint: 'DPOFLOW_TEST_S3_ENDPOINT',
  s3AccessKeyId: 'DPOFLOW_TEST_S3_ACCESS_KEY_ID',
  s3SecretAccessKey: 'DPOFLOW_TEST_S3_SECRET_ACCESS_KEY',
  s3Unavailable: 'DPOFLOW_TEST_S3_UNAVAILABLE',
} as const;

export interface TestS3 {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

function unavailable(t: TestContext, what: string, reason: string | undefined): undefined {
  const message = `${what} unavailable (${reason ?? 'not started: run tests with `npm test`'})`;
  if (process.env.CI === 'true') throw new Error(`CI=true: ${message}`);
  console.error(`!!! SKIPPED: ${message}`);
  t.skip(message);
  return undefined;
}

/** The MinIO that test/run.ts started, or undefined after marking the test skipped. */
export function testS3(t: TestContext): TestS3 | undefined {
  const endpoint = process.env[serviceEnv.s3Endpoint];
  if (!endpoint) return unavailable(t, 'MinIO', process.env[serviceEnv.s3Unavailable]);
  return {
    endpoint,
    accessKeyId: process.env[serviceEnv.s3AccessKeyId]!,
    secretAccessKey: process.env[serviceEnv.s3SecretAccessKey]!,
  };
}

/** host:port of the Temporal dev server that test/run.ts started, or undefined after marking the test skipped. */
export function testTemporalAddress(t: TestContext): string | undefined {
  const address = process.env[serviceEnv.temporalAddress];
  if (!address) return unavailable(t, 'Temporal dev server', process.env[serviceEnv.temporalUnavailable]);
  return address;
}
