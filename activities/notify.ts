// The completion webhook: POSTs a run's outcome as JSON, signed so the receiver can tell it came from dpoflow:
// X-Dpoflow-Signature: sha256=<hex HMAC-SHA256 of the body> with the worker's DPOFLOW_WEBHOOK_SECRET (the key
// never travels in configs or Temporal history). A non-2xx answer fails the attempt, and Temporal retries.

import { createHmac } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';

export interface RunOutcome {
  run_id: string;
  status: 'COMPLETED' | 'FAILED' | 'CANCELLED';
  model_uri?: string;
  evaluation_uri?: string;
  metrics?: Record<string, number>;
  failure?: string;
}

export function webhookSignature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export async function notifyWebhook(
  url: string,
  outcome: RunOutcome,
  secret: string | undefined,
): Promise<void> {
  if (!secret) {
    throw ApplicationFailure.nonRetryable(
      'notify.webhook_url is set but the worker has no DPOFLOW_WEBHOOK_SECRET to sign with',
      'ConfigError',
    );
  }
  const body = JSON.stringify({ ...outcome, sent_at: new Date().toISOString() });
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-dpoflow-signature': webhookSignature(secret, body) },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`webhook ${url} answered ${response.status} ${response.statusText}`);
}
