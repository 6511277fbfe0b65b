/**
 * A JSON string literal without JSON.stringify for the common case: strings
 * with no character that needs escaping (controls, quote, backslash,
 * surrogates) are quoted as they are; the rest go through JSON.stringify,
 * which escapes lone surrogates too, so every line stays valid UTF-8 JSON.
 */
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;

export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}
