// S3 backend (`s3://bucket/prefix`), for AWS S3 and MinIO. A single PUT or a completed multipart upload is
// atomic in S3, so streams go through lib-storage's Upload (aborted on error); nothing is ever buffered whole.

import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  paginateListObjectsV2,
  S3Client,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { PublishOptions, StagedObject, StoreBackend, WriteOptions } from './backend.ts';
import { networkErrorCode, StoreError } from './errors.ts';
import type { ListEntry, ObjectInfo } from './types.ts';
import { isTempKey, joinKey, keyUri, type StoreRoot, tempMarker } from './uri.ts';

export interface S3StoreOptions {
  endpoint?: string; // e.g. http://127.0.0.1:9000 for MinIO; default AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS
  region?: string; // default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1
  forcePathStyle?: boolean; // default true when an endpoint is set (MinIO), false for AWS
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }; // default: AWS chain
  maxAttempts?: number; // attempts per request, default the SDK's (3); 1 makes an unreachable endpoint fail fast
  connectionTimeoutMs?: number; // TCP connect timeout, default the SDK's
  requestTimeoutMs?: number; // deadline for a response to begin (the upload of a part counts), default none
  partSizeBytes?: number; // multipart part size, default 5 MiB: streams of unknown size up to 48 GiB (10,000 parts)
  uploadConcurrency?: number; // parts in flight per upload, default 2; see the memory note on S3Backend
  copyPartSizeBytes?: number; // objects above this are copied server-side in parts this size; default 1 GiB
}

type S3Root = Extract<StoreRoot, { scheme: 's3' }>;

/** What the SDK's service and network errors carry that we sort on. */
interface SdkError {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

const mib = 1024 * 1024;
const deleteBatch = 1000; // DeleteObjects limit
const maxParts = 10_000; // multipart upload limit
const copyConcurrency = 4;
const throttlingNames = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'InternalError',
]);

/**
 * Memory per streamed upload: lib-storage holds the parts in flight plus the one being assembled, about
 * (concurrency + 2) × part size, and V8 frees those (promoted) buffers only at a major GC, which external
 * memory triggers every ~64 MiB. Peak RSS growth measured with the defaults (5 MiB × 2): 65-88 MiB for a
 * 200 MiB stream, 73 MiB for 1 GiB; 8 MiB × 4 gave ~135 MiB.
 */
export class S3Backend implements StoreBackend {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly endpointLabel: string;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly copyPartSize: number;
  private bucketSeen = false;

  constructor(
    readonly root: S3Root,
    options: S3StoreOptions = {},
  ) {
    const endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
    const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    this.client = new S3Client({
      endpoint,
      region,
      forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
      credentials: options.credentials,
      maxAttempts: options.maxAttempts,
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs,
        requestTimeout: options.requestTimeoutMs,
        throwOnRequestTimeout: true, // the SDK's default only logs a warning and keeps waiting
      },
    });
    this.bucket = root.bucket;
    this.endpointLabel = endpoint ?? `AWS S3 (${region})`;
    this.partSize = options.partSizeBytes ?? 5 * mib;
    this.queueSize = options.uploadConcurrency ?? 2;
    this.copyPartSize = options.copyPartSizeBytes ?? 1024 * mib;
  }

  async write(key: string, body: Uint8Array | Readable, options: WriteOptions): Promise<void> {
    const params = {
      Bucket: this.bucket,
      Key: this.fullKey(key),
      ContentType: options.contentType,
      Metadata: options.sha256 ? { sha256: options.sha256 } : undefined,
    };
    try {
      if (body instanceof Uint8Array) {
        await this.client.send(
          new PutObjectCommand({ ...params, Body: body, ContentLength: body.byteLength }),
        );
      } else {
        // leavePartsOnError false: a failed stream or part aborts the multipart upload instead of leaving it.
        const upload = new Upload({
          client: this.client,
          params: { ...params, Body: body },
          partSize: this.partSizeFor(options.bytes),
          queueSize: this.queueSize,
          leavePartsOnError: false,
        });
        await upload.done();
      }
    } catch (error) {
      if (!(body instanceof Uint8Array)) body.destroy();
      throw await this.fail(error, key, { bucketMayBeMissing: true });
    }
  }

  async stage(folderKey: string, body: Readable, options: WriteOptions): Promise<StagedObject> {
    const tempKey = joinKey(folderKey, `${tempMarker}${randomUUID()}`);
    await this.write(tempKey, body, options);
    return {
      publish: async (key, publishOptions) => {
        await this.copy(tempKey, key, publishOptions);
        await this.remove([tempKey]);
      },
      discard: () => this.remove([tempKey]),
    };
  }

  async read(key: string): Promise<Readable> {
    try {
      const response = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }),
      );
      return response.Body as Readable;
    } catch (error) {
      throw await this.fail(error, key);
    }
  }

  downloadUrl(key: string, expiresInSeconds: number): Promise<string> {
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) });
    return getSignedUrl(this.client, command, { expiresIn: expiresInSeconds });
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }),
      );
      return {
        bytes: head.ContentLength ?? 0,
        lastModified: head.LastModified ?? new Date(0),
        etag: head.ETag,
        sha256: head.Metadata?.sha256,
      };
    } catch (error) {
      if ((error as SdkError).$metadata?.httpStatusCode !== 404) throw await this.fail(error, key);
      // HEAD answers a missing bucket and a missing key with the same bodiless 404: ask about the bucket once.
      await this.checkBucket(key);
      return undefined;
    }
  }

  async *list(prefix: string, options: { includeTemp: boolean }): AsyncIterable<ListEntry> {
    const rootLength = this.fullKey('').length;
    const pages = paginateListObjectsV2(
      { client: this.client },
      { Bucket: this.bucket, Prefix: this.fullKey(prefix) },
    );
    try {
      for await (const page of pages) {
        for (const object of page.Contents ?? []) {
          const key = object.Key!.slice(rootLength);
          if (!options.includeTemp && isTempKey(key)) continue;
          yield { key, bytes: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
        }
      }
    } catch (error) {
      throw await this.fail(error, prefix, { bucketMayBeMissing: true });
    }
  }

  async remove(keys: string[]): Promise<void> {
    try {
      if (keys.length === 1) {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(keys[0]) }));
        return;
      }
      for (let start = 0; start < keys.length; start += deleteBatch) {
        const objects = keys.slice(start, start + deleteBatch).map((key) => ({ Key: this.fullKey(key) }));
        const result = await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: objects, Quiet: true } }),
        );
        const failed = result.Errors?.[0];
        if (failed) throw Object.assign(new Error(failed.Message), { name: failed.Code, key: failed.Key });
      }
    } catch (error) {
      throw await this.fail(error, keys[0] ?? '', { bucketMayBeMissing: true });
    }
  }

  async abortIncompleteUploads(cutoff: Date): Promise<{ abortedUploads: number }> {
    const rootPrefix = this.fullKey('');
    let abortedUploads = 0;
    let markers: { KeyMarker?: string; UploadIdMarker?: string } = {};
    try {
      for (;;) {
        // No Prefix: MinIO lists uploads only for an exact key or the whole bucket, so filter here.
        const page = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, ...markers }),
        );
        for (const upload of page.Uploads ?? []) {
          if (!upload.Key?.startsWith(rootPrefix) || !upload.Initiated || upload.Initiated >= cutoff)
            continue;
          await this.client.send(
            new AbortMultipartUploadCommand({
              Bucket: this.bucket,
              Key: upload.Key,
              UploadId: upload.UploadId,
            }),
          );
          abortedUploads++;
        }
        if (!page.IsTruncated) return { abortedUploads };
        markers = { KeyMarker: page.NextKeyMarker, UploadIdMarker: page.NextUploadIdMarker };
      }
    } catch (error) {
      throw await this.fail(error, '', { bucketMayBeMissing: true });
    }
  }

  /** Server-side copy with the sha256 recorded as metadata; big objects in parts (CopyObject stops at 5 GiB). */
  private async copy(fromKey: string, toKey: string, options: PublishOptions): Promise<void> {
    const target = {
      Bucket: this.bucket,
      Key: this.fullKey(toKey),
      ContentType: options.contentType,
      Metadata: options.sha256 ? { sha256: options.sha256 } : undefined,
    };
    const copySource = [this.bucket, ...this.fullKey(fromKey).split('/')].map(encodeURIComponent).join('/');
    try {
      if (options.bytes <= this.copyPartSize) {
        await this.client.send(
          new CopyObjectCommand({ ...target, CopySource: copySource, MetadataDirective: 'REPLACE' }),
        );
        return;
      }
      const { UploadId } = await this.client.send(new CreateMultipartUploadCommand(target));
      const partCount = Math.ceil(options.bytes / this.copyPartSize);
      const etags: string[] = [];
      let next = 0;
      const copyParts = async () => {
        for (let index = next++; index < partCount; index = next++) {
          const start = index * this.copyPartSize;
          const end = Math.min(options.bytes, start + this.copyPartSize) - 1;
          const part = await this.client.send(
            new UploadPartCopyCommand({
              ...target,
              UploadId,
              PartNumber: index + 1,
              CopySource: copySource,
              CopySourceRange: `bytes=${start}-${end}`,
            }),
          );
          etags[index] = part.CopyPartResult!.ETag!;
        }
      };
      const copied = await Promise.allSettled(Array.from({ length: copyConcurrency }, copyParts));
      const failure = copied.find((result) => result.status === 'rejected');
      if (failure) {
        await this.client
          .send(new AbortMultipartUploadCommand({ ...target, UploadId }))
          .catch(() => undefined);
        throw failure.reason;
      }
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: target.Key,
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) },
        }),
      );
    } catch (error) {
      throw await this.fail(error, toKey);
    }
  }

  /** The configured part size, or larger parts when a known size would need more than 10,000 of them. */
  private partSizeFor(bytes: number | undefined): number {
    const needed = bytes === undefined ? 0 : Math.ceil(bytes / maxParts / mib) * mib;
    return Math.max(this.partSize, needed);
  }

  private async checkBucket(key: string): Promise<void> {
    if (this.bucketSeen) return;
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      this.bucketSeen = true;
    } catch (error) {
      throw await this.fail(error, key, { bucketRequest: true });
    }
  }

  private fullKey(key: string): string {
    return this.root.prefix ? `${this.root.prefix}/${key}` : key;
  }

  /** Sorts an SDK or network error into a StoreError whose message names the URI or endpoint and a hint. */
  private async fail(
    error: unknown,
    key: string,
    context: { bucketRequest?: boolean; bucketMayBeMissing?: boolean } = {},
  ): Promise<StoreError> {
    if (error instanceof StoreError) return error;
    const sdk = error as SdkError;
    const uri = key ? keyUri(this.root, key) : this.root.uri;
    const status = sdk.$metadata?.httpStatusCode;
    const name = sdk.name ?? 'Error';
    const networkCode = networkErrorCode(error);
    if (networkCode || name === 'TimeoutError')
      return new StoreError(
        'Unreachable',
        `cannot reach S3 endpoint ${this.endpointLabel}: ${networkCode ?? `timeout (${sdk.message})`} (accessing ${uri})`,
        { cause: error },
      );
    if (name === 'NoSuchBucket' || (context.bucketRequest && status === 404))
      return new StoreError(
        'NoSuchBucket',
        `${uri}: bucket "${this.bucket}" does not exist at ${this.endpointLabel} (create it or fix store.uri)`,
        { cause: error },
      );
    if (name === 'NoSuchKey' || name === 'NotFound')
      return new StoreError('NotFound', `${uri}: no such object`, { cause: error });
    if (name === 'CredentialsProviderError')
      return new StoreError(
        'AccessDenied',
        `no credentials for ${this.endpointLabel}: ${sdk.message} (pass s3.credentials, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)`,
        { cause: error },
      );
    if (status === 403 || name === 'AccessDenied') {
      const accessKey = await this.accessKeyId();
      if (name === 'InvalidAccessKeyId')
        return new StoreError(
          'AccessDenied',
          `bad credentials for ${this.endpointLabel}: access key "${accessKey}" rejected (InvalidAccessKeyId)`,
          { cause: error },
        );
      if (name === 'SignatureDoesNotMatch')
        return new StoreError(
          'AccessDenied',
          `bad credentials for ${this.endpointLabel}: secret key of access key "${accessKey}" rejected (SignatureDoesNotMatch)`,
          { cause: error },
        );
      return new StoreError(
        'AccessDenied',
        `${uri}: access denied for access key "${accessKey}" at ${this.endpointLabel} (${name}, HTTP 403; check the credentials and the bucket policy)`,
        { cause: error },
      );
    }
    if (status === 404 && context.bucketMayBeMissing) {
      await this.checkBucket(key);
    }
    if (name === 'InvalidBucketName' || name === 'KeyTooLongError')
      return new StoreError('InvalidKey', `${uri}: ${name}: ${sdk.message}`, { cause: error });
    const retryable =
      sdk.$retryable !== undefined ||
      throttlingNames.has(name) ||
      (status !== undefined && (status >= 500 || status === 429));
    return new StoreError(
      'Unknown',
      `${uri}: ${name} (HTTP ${status ?? 'none'}) from ${this.endpointLabel}: ${sdk.message}`,
      {
        cause: error,
        retryable,
      },
    );
  }

  private async accessKeyId(): Promise<string> {
    try {
      return (await this.client.config.credentials()).accessKeyId;
    } catch {
      return '(unresolved)';
    }
  }
}
