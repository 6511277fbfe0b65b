/**
 * Options of the `s3` backend (a payload store in an S3 bucket, or any
 * S3-compatible server: MinIO, Ceph, s3rver). Kept apart from the driver so
 * that validating a config does not load the AWS SDK.
 */
import { z } from "zod";

export const optionsSchema = z
  .object({
    bucket: z.string().min(3).max(63),
    /** Key prefix inside the bucket (each namespace gets `<prefix><namespace>/` below it). */
    prefix: z.string().max(512).optional(),
    region: z.string().min(1).optional(),
    /** An S3-compatible endpoint (http://127.0.0.1:9000); unset: AWS. */
    endpoint: z.string().url().optional(),
    /** Path-style URLs (endpoint/bucket/key), which most S3-compatible servers need. Default: true with an endpoint. */
    force_path_style: z.boolean().optional(),
    /** Unset: the AWS SDK's default credential chain (environment, profile, instance role). */
    access_key_id: z.string().min(1).optional(),
    secret_access_key: z.string().min(1).optional(),
    /** Multipart part size in MiB (5-512; default 8). Memory per upload is about part size × 2. */
    part_size_mb: z.number().int().min(5).max(512).optional(),
    /** Create the bucket when it does not exist (default false). */
    create_bucket: z.boolean().optional(),
  })
  .strict();

export type S3Options = z.infer<typeof optionsSchema>;
