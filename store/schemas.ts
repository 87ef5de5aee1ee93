// Zod schemas for what crosses process boundaries: artifact references and manifests. Imports only zod, so
// workflow code (no Node built-ins, no AWS) can validate the references it passes between steps.

import { z } from 'zod';

const sha256Hex = /^[0-9a-f]{64}$/;

export const artifactRefSchema = z.object({
  uri: z.string().min(1),
  sha256: z.string().regex(sha256Hex, 'sha256 must be 64 lowercase hex digits'),
  bytes: z.number().int().nonnegative(),
  format: z.string().min(1),
});

export const manifestSchema = z.object({
  format: z.string().min(1),
  formatVersion: z.number().int().nonnegative(),
  files: z.array(
    z.object({
      path: z.string().min(1),
      bytes: z.number().int().nonnegative(),
      sha256: z.string().regex(sha256Hex, 'sha256 must be 64 lowercase hex digits').optional(),
    }),
  ),
  meta: z.record(z.string(), z.unknown()).optional(),
});
