// The store a config's `store` section names, with its S3 client settings (credentials from the config only
// when both keys are given; otherwise the AWS chain, e.g. AWS_ACCESS_KEY_ID in the environment).

import type { StoreConfig } from '../config/schema.ts';
import { openStore } from './index.ts';
import type { ArtifactStore } from './types.ts';

export function openConfiguredStore(config: StoreConfig): ArtifactStore {
  const { s3 } = config;
  return openStore(config.uri, {
    s3: {
      endpoint: s3.endpoint,
      region: s3.region,
      // An endpoint (MinIO) already implies path-style addressing; the flag forces it for any endpoint.
      forcePathStyle: s3.force_path_style || undefined,
      credentials:
        s3.access_key_id && s3.secret_access_key
          ? { accessKeyId: s3.access_key_id, secretAccessKey: s3.secret_access_key }
          : undefined,
    },
  });
}
