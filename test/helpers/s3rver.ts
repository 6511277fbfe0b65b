/** An S3-compatible server (s3rver, from npm) on an ephemeral port, for the s3 payload driver's tests. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

export interface S3rverHandle {
  endpoint: string;
  bucket: string;
  /** Driver options for `type: s3` pointing at it (s3rver's fixed credentials). */
  options(prefix: string): Record<string, unknown>;
  close(): Promise<void>;
}

export async function startS3rver(bucket = "prism-test"): Promise<S3rverHandle> {
  const S3rver = require("s3rver") as new (o: Record<string, unknown>) => { run(): Promise<AddressInfo>; close(): Promise<void> };
  const directory = mkdtempSync(join(tmpdir(), "prism-s3rver-"));
  const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory, configureBuckets: [{ name: bucket }] });
  const addr = await server.run();
  const endpoint = `http://127.0.0.1:${addr.port}`;
  return {
    endpoint,
    bucket,
    options: (prefix) => ({ type: "s3", bucket, endpoint, region: "us-east-1", access_key_id: "S3RVER", secret_access_key: "S3RVER", prefix, part_size_mb: 5 }),
    close: async () => {
      await server.close().catch(() => {});
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
