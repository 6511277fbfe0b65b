/**
 * Credential masking: the ONE place that knows how each driver spells a
 * secret inside a connection string, used for everything Prism shows or
 * writes (Admin GetNamespace / ListNamespaces / ListBackendInstances, Health
 * messages, error messages, logs, the CLI's banner, config-store labels).
 *
 * Forms understood (each driver uses one or more of them):
 * - URL userinfo: `redis://user:pa@ss:w@host:6379/0`, `postgres://u:pw@h/db`,
 *   `amqp://guest:guest@h`, `mqtt://u:p@h`, `nats://u:p@h` and `nats://token@h`.
 *   The userinfo is what precedes the LAST `@` of the authority (WHATWG URL,
 *   which ioredis and pg-connection-string use, reads it that way: unencoded
 *   `@` and `:` in a password are allowed). When the string is not a clean URL
 *   (a `/`, `?` or `#` inside the password moves the authority's end; a `#`
 *   anywhere; an `@` in the path) the mask extends to the last `@` of the whole
 *   token: over-masking an odd string is fine, leaking part of a password is not.
 * - Query parameters: `?password=…`, `&pass=…`, `&token=…`, `sslpassword`,
 *   `auth_token`, `client_secret`, `api_key` …: the value up to the next `&`
 *   (a `#` or `@` inside it is masked with it).
 * - libpq keyword strings: `host=db port=5432 user=u password='p w\'d' dbname=x`
 *   (quoted values with backslash escapes, or bare values).
 * - Objects (driver options): any key that names a secret (password, pass,
 *   token, secret, credential, private…) is masked whole, recursively.
 *
 * Validation (checkUrlCredentials) refuses the URL forms this reading would
 * disagree with a driver's own parser about, so the mask and the connection
 * always see the same password.
 */

export const MASK = "***";

/** Object keys whose string values are secrets (driver options: password, pass, token, sasl.password …). */
const SECRET_KEY = /pass(word|wd)?|pwd|secret|token|credential|private|api[_-]?key/i;

/** Query-string / keyword names whose values are secrets. */
const SECRET_PARAM = "[A-Za-z_]*(?:pass(?:word|wd)?|pwd|token|secret|api[_-]?key)";

/** `?password=…` / `&token=…` inside a URL token: the value runs to the next `&` (or the end). */
const URL_SECRET_PARAM = new RegExp(`([?&;])(${SECRET_PARAM})=([^&]*)`, "gi");

/**
 * `password=…` in a libpq keyword string: after white space (or the start), the
 * value is a single-quoted string (backslash escapes; an unterminated one runs
 * to the end) or a bare word (backslash escapes; ends at white space only).
 */
const KEYWORD_SECRET_PARAM = new RegExp(`(^|\\s)(${SECRET_PARAM})(\\s*=\\s*)('(?:[^'\\\\]|\\\\.)*'?|(?:[^\\s\\\\]|\\\\.)*)`, "gi");
/** The same in free text (an error message, a log line): a bare value also ends at `&` or a double quote. */
const TEXT_SECRET_PARAM = new RegExp(`(^|[\\s?&;,("])(${SECRET_PARAM})(\\s*=\\s*)('(?:[^'\\\\]|\\\\.)*'?|(?:[^\\s&"\\\\]|\\\\.)*)`, "gi");

/** `user:secret@host` without a scheme, in free text. */
const BARE_USERINFO = /(^|[\s(,"'=])([^\s:/?#@"'=]+):([^\s"']*)@(?=[^\s@"']+(?:[\s"',;)]|$))/g;

/** A URL token inside free text (ends at white space or a quote). */
const URL_IN_TEXT = /\b[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>`]*/g;

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/** One host of an authority: `[v6]`, a name or an IPv4, optionally `:port`. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._~-]+)?\]|[A-Za-z0-9._~%!$&'()*+;=-]*)(?::[0-9]*)?$/;

interface UrlParts {
  /** `scheme://` */
  scheme: string;
  /** Everything after `scheme://`. */
  rest: string;
  /** Index in `rest` of the `@` ending the userinfo (-1: none). */
  at: number;
  /** The split agrees with WHATWG URL (what the drivers do) and nothing is ambiguous. */
  clean: boolean;
}

/** End of the authority in `rest`: the first `/`, `?`, `#` or `\` (WHATWG). */
function authorityEnd(rest: string): number {
  for (let i = 0; i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    if (c === 0x2f || c === 0x3f || c === 0x23 || c === 0x5c) return i;
  }
  return rest.length;
}

/** True when every `@` of `tail` (what follows the authority) sits in a query value (`?k=v@w`). */
function atsOnlyInQueryValues(tail: string): boolean {
  if (tail.indexOf("@") < 0) return true;
  const q = tail.indexOf("?");
  if (q < 0 || tail.slice(0, q).includes("@")) return false;
  for (const seg of tail.slice(q + 1).split("&")) {
    const at = seg.indexOf("@");
    if (at < 0) continue;
    const eq = seg.indexOf("=");
    if (eq < 0 || eq > at) return false;
  }
  return true;
}

function splitUrl(url: string): UrlParts | undefined {
  const m = SCHEME.exec(url);
  if (!m) return undefined;
  const scheme = m[0];
  const rest = url.slice(scheme.length);
  const e = authorityEnd(rest);
  const authority = rest.slice(0, e);
  const tail = rest.slice(e);
  const inAuthority = authority.lastIndexOf("@");
  const hosts = (inAuthority < 0 ? authority : authority.slice(inAuthority + 1)).split(",");
  const clean = !rest.includes("#") && atsOnlyInQueryValues(tail) && hosts.every((h) => HOST.test(h));
  if (clean) return { scheme, rest, at: inAuthority, clean };
  return { scheme, rest, at: rest.lastIndexOf("@"), clean };
}

/** `user:secret` → `user:***`; a user alone stays (user names are not secrets). */
function maskUserinfo(userinfo: string): string {
  const colon = userinfo.indexOf(":");
  return colon < 0 ? userinfo : `${userinfo.slice(0, colon)}:${MASK}`;
}

/** One URL (the whole string): userinfo password and secret query parameters masked. */
function redactUrl(url: string, dropUserinfo: boolean): string {
  // Query secrets first: a masked value can no longer hold an `@` that would move the userinfo split.
  const masked = url.replace(URL_SECRET_PARAM, `$1$2=${MASK}`);
  const p = splitUrl(masked);
  if (!p) return masked;
  if (p.at < 0) return masked;
  const host = p.rest.slice(p.at + 1);
  if (dropUserinfo) return `${p.scheme}${host}`;
  return `${p.scheme}${maskUserinfo(p.rest.slice(0, p.at))}@${host}`;
}

/** libpq keyword strings (`host=… password=…`) and free text: `password=…` values masked. */
function redactParams(text: string): string {
  return text.replace(TEXT_SECRET_PARAM, `$1$2$3${MASK}`);
}

/**
 * THE masking function: any string Prism may show (a connection string in any
 * of the forms above, an error message, a log line) with its credentials masked.
 * A string that is one URL is treated as a whole (spaces or quotes inside a
 * password included); in other text every URL token is masked, then every
 * `password=…`-style pair.
 */
export function redactSecrets(text: string): string {
  if (typeof text !== "string" || text.length === 0) return text;
  const t = text.trim();
  if (isKeywordString(t)) return text.replace(KEYWORD_SECRET_PARAM, `$1$2$3${MASK}`);
  if (SCHEME.test(t)) {
    // One URL (a password may even hold spaces); anything after white space is also checked for `password=…`.
    const u = redactUrl(t, false);
    return /\s/.test(u) ? redactParams(u) : u;
  }
  // Fast path for the common message with nothing that could be a secret.
  if (text.indexOf("@") < 0 && text.indexOf("=") < 0) return text;
  const urls = text.replace(URL_IN_TEXT, (u) => redactUrl(u, false));
  return redactParams(urls.indexOf("@") < 0 ? urls : urls.replace(BARE_USERINFO, (m, pre: string, user: string, secret: string) => (secret.includes(MASK) || secret.startsWith("//") ? m : `${pre}${user}:${MASK}@`)));
}

/** A URL for labels and logs: no userinfo at all, secret query parameters masked ("redis://host:6379/0"). */
export function displayUrl(url: string): string {
  if (!SCHEME.test(url.trim())) return redactSecrets(url);
  return redactUrl(url.trim(), true);
}

/** A value (driver options, a namespace config) with every secret masked: secret-named keys whole, strings via redactSecrets. */
export function redactValue<T>(value: T): T {
  return walk(value, undefined) as T;
}

function walk(v: unknown, key: string | undefined): unknown {
  if (typeof v === "string") return key !== undefined && SECRET_KEY.test(key) ? MASK : redactSecrets(v);
  if (Array.isArray(v)) return v.map((x) => walk(x, key));
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = walk(x, k);
    return out;
  }
  return v;
}

/** JSON of a config with every secret masked (Admin's config_json / options_json). */
export function redactedJson(value: unknown): string {
  return JSON.stringify(redactValue(value));
}

// ------------------------------------------------------------------ validation

/**
 * Why a connection URL must be refused, or undefined when it is fine.
 *
 * Choice (issue 19): an unencoded `@` or `:` in the user or password is
 * ACCEPTED — WHATWG URL, which ioredis and pg-connection-string use, takes the
 * userinfo up to the last `@` of the authority, and redactSecrets reads it the
 * same way, so the connection and the mask agree. An unencoded `/`, `?`, `#`
 * (or `\`) in the user or password is REFUSED with INVALID_ARGUMENT naming the
 * field: those characters end the authority, so every parser sees another host
 * and part of the password as a path or query (ioredis answers `Invalid URL` as
 * INTERNAL at the first call, or, worse, connects elsewhere), and no rule can
 * tell `redis://:12/ab@host` (password "12/ab") from a real path. Refusing at
 * validation, with the percent-encodings to use, is the only way the string that
 * is stored, the one that is masked and the one that connects are the same.
 * A `#` is refused anywhere: no driver URL has a fragment, so a `#` is always an
 * unencoded character of a password or value, which the driver would silently cut.
 */
export function checkUrlCredentials(url: string): string | undefined {
  const p = splitUrl(url);
  if (!p) return undefined;
  const ENCODE = "percent-encode / ? # @ in the user, password or values as %2F %3F %23 %40";
  if (p.rest.includes("#")) return `contains "#" (a URL has no fragment here: it is part of a password or value); ${ENCODE}`;
  if (!p.clean) return `cannot be read unambiguously: the user or password seems to hold "/", "?" or "\\", which end the host part of a URL; ${ENCODE}`;
  return undefined;
}

// ------------------------------------------------------------------ libpq keyword strings

/** True for a libpq keyword/value connection string (`host=db dbname=x …`), not a URL. */
export function isKeywordString(s: string): boolean {
  return !SCHEME.test(s.trim()) && /^\s*[A-Za-z_][A-Za-z0-9_]*\s*=/.test(s);
}

/**
 * Parses a libpq keyword/value string (libpq's conninfo_parse rules): `key =
 * value` pairs separated by white space; a value is single-quoted (`\'` and
 * `\\` escapes; white space allowed) or a bare word (backslash escapes).
 * Throws an Error naming the problem (never echoing a value).
 */
export function parseKeywordString(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  const n = s.length;
  const ws = (c: string | undefined) => c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v";
  while (i < n) {
    while (i < n && ws(s[i])) i++;
    if (i >= n) break;
    const k0 = i;
    while (i < n && /[A-Za-z0-9_]/.test(s[i]!)) i++;
    const key = s.slice(k0, i);
    if (!key) throw new Error(`expected a keyword at position ${k0}`);
    while (i < n && ws(s[i])) i++;
    if (s[i] !== "=") throw new Error(`missing "=" after "${key}"`);
    i++;
    while (i < n && ws(s[i])) i++;
    let value = "";
    if (s[i] === "'") {
      i++;
      let closed = false;
      while (i < n) {
        const c = s[i]!;
        if (c === "\\" && i + 1 < n) {
          value += s[i + 1];
          i += 2;
        } else if (c === "'") {
          i++;
          closed = true;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed) throw new Error(`unterminated quoted value of "${key}"`);
    } else {
      while (i < n && !ws(s[i])) {
        if (s[i] === "\\" && i + 1 < n) {
          value += s[i + 1];
          i += 2;
        } else value += s[i++];
      }
    }
    out[key] = value;
  }
  if (Object.keys(out).length === 0) throw new Error("no keyword=value pairs");
  return out;
}
