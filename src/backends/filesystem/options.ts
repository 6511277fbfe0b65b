/**
 * Options of the `filesystem` backend (a payload store in a directory).
 * Kept apart from the driver so that validating a config does not load it.
 */
import { z } from "zod";

export const optionsSchema = z
  .object({
    /** The directory payloads live in (created if missing); relative to server.data_dir, confined like a sqlite path. */
    root: z.string().min(1),
    /** fsync each payload before its claim is written (default true: a claim never points at bytes lost in a crash). */
    fsync: z.boolean().optional(),
  })
  .strict();

export type FilesystemOptions = z.infer<typeof optionsSchema>;

/** Options that name a file or directory: confined to server.data_dir (src/config/paths.ts). */
export const fileOptions = ["root"] as const;
