/**
 * Options of the `postgres` backend (its `backend:` block in prism.yaml, minus `type`).
 * Kept apart from the driver so that validating a config does not load the
 * driver, and a serving process never loads the validator (zod).
 */
import { z } from "zod";
import { checkUrlCredentials, isKeywordString, parseKeywordString } from "../../core/redact.js";

export const DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test";

/**
 * A libpq keyword/value string (`host=db port=5432 user=u password='p w' dbname=x
 * sslmode=require`) as the equivalent postgres:// URL, which is what pg reads
 * (pg-connection-string parses only URLs: a keyword string became a URL
 * relative to "postgres://base", i.e. `getaddrinfo ENOTFOUND base`). User and
 * password are percent-encoded, so any character in them is fine; every other
 * keyword becomes a query parameter (pg reads sslmode, application_name,
 * options, sslcert … from there, and server.data_dir confinement checks the
 * file ones like any URL's). Throws with the problem (never a value).
 */
export function keywordStringToUrl(s: string): string {
  const kw = parseKeywordString(s);
  const { host: hostKw, hostaddr, port, user, password, dbname, ...rest } = kw;
  const host = hostaddr ?? hostKw;
  const params = new URLSearchParams();
  let authority = "";
  if (host !== undefined && host !== "") {
    // A socket directory or several hosts cannot sit in the authority: pg reads them from ?host=.
    if (host.startsWith("/") || host.includes(",")) params.set("host", host);
    else if (/^[A-Za-z0-9._-]+$/.test(host)) authority = host;
    else if (/^[0-9A-Fa-f:.]+$/.test(host)) authority = `[${host}]`;
    else throw new Error(`host: not a host name or address`);
  }
  if (port !== undefined) {
    if (!/^[0-9]{1,5}$/.test(port)) throw new Error(`port: must be a number`);
    if (authority) authority += `:${port}`;
    else params.set("port", port);
  }
  for (const [k, v] of Object.entries(rest)) params.set(k, v);
  let userinfo = "";
  if (user !== undefined) userinfo = encodeURIComponent(user);
  if (password !== undefined) userinfo += `:${encodeURIComponent(password)}`;
  // pg decodes the database with decodeURI, which keeps %2F %3F %23 %40 %25 as they are: such names cannot be passed.
  if (dbname !== undefined && /[/?#@%\\]/.test(dbname)) throw new Error(`dbname: "/", "?", "#", "@", "%" and "\\" are not supported in a database name`);
  const query = params.toString();
  return `postgres://${userinfo ? `${userinfo}@` : ""}${authority}/${dbname !== undefined ? encodeURI(dbname) : ""}${query ? `?${query}` : ""}`;
}

/** `url` as given: a postgres:// URL (checked for unencoded delimiters in its credentials), or a keyword string (converted). */
const connectionString = z
  .string()
  .min(1)
  .transform((v, ctx) => {
    if (isKeywordString(v)) {
      try {
        return keywordStringToUrl(v);
      } catch (e) {
        ctx.addIssue({ code: "custom", message: `libpq keyword string: ${(e as Error).message}` });
        return z.NEVER;
      }
    }
    if (v.startsWith("/")) return v; // pg's "socket-directory database" form
    if (!/^postgres(ql)?:\/\//i.test(v)) {
      ctx.addIssue({ code: "custom", message: 'must be a postgres:// URL or a libpq keyword string ("host=… dbname=… user=… password=…")' });
      return z.NEVER;
    }
    const problem = checkUrlCredentials(v);
    if (problem !== undefined) {
      ctx.addIssue({ code: "custom", message: problem });
      return z.NEVER;
    }
    return v;
  });

export const optionsSchema = z
  .object({
    /** A postgres:// URL, or a libpq keyword/value string (converted to the URL). */
    url: connectionString.default(DEFAULT_URL),
    /** The schema holding Prism's tables (created if missing). Several Prism clusters can share a database with different schemas. */
    schema: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, "must be a plain identifier: 1-63 of A-Z a-z 0-9 _, not starting with a digit")
      .default("prism"),
    /** Pool size for queries (the listen connection comes on top). */
    pool_max: z.number().int().min(1).max(1000).default(10),
    /** How long opening a connection may take before the call fails with UNAVAILABLE. */
    connect_timeout_ms: z.number().int().min(100).max(60_000).default(5_000),
  })
  .strict();

export type PostgresOptions = z.infer<typeof optionsSchema>;

/** Query parameters of `url` that name files (pg reads them when connecting): confined to server.data_dir (src/config/paths.ts). */
export const fileUrlParams = { url: ["sslcert", "sslkey", "sslrootcert"] } as const;
