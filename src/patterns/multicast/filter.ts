/**
 * The Multicast Registry's filter language over member metadata, parsed once
 * and validated up front (a syntax error names its position):
 *
 *   type = "temperature" and floor = 3
 *   (floor >= 2 and floor < 5) or not exists decommissioned
 *   name startswith "sensor-" and zone != "b"
 *   {"location": "building-a"}            JSON shorthand: equality on every key
 *
 * Operators: = (also ==), !=, <, <=, >, >= (numbers), startswith, endswith,
 * contains, exists; and / or / not, parentheses; keywords are case-insensitive.
 * Values are quoted strings ("…" or '…'), numbers, or bare words. Metadata
 * values are strings: `=` with a number compares numerically when the
 * metadata value is a number; ordering operators need numbers on both sides
 * (a member whose value is not a number does not match).
 */

export type Metadata = Readonly<Record<string, string>>;
export type Filter = (m: Metadata) => boolean;

export class FilterError extends Error {
  constructor(
    readonly position: number,
    what: string,
  ) {
    super(`position ${position}: ${what}`);
  }
}

type Tok = { t: "id" | "str" | "num" | "op" | "(" | ")" | "end"; v: string; pos: number };

const OPS = ["==", "!=", "<=", ">=", "=", "<", ">"];

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const pos = i + 1;
    if (c === "(" || c === ")") {
      out.push({ t: c, v: c, pos });
      i++;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (op) {
      out.push({ t: "op", v: op === "==" ? "=" : op, pos });
      i += op.length;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let s = "";
      while (j < src.length && src[j] !== c) {
        if (src[j] === "\\" && j + 1 < src.length) j++;
        s += src[j];
        j++;
      }
      if (j >= src.length) throw new FilterError(pos, "unterminated string");
      out.push({ t: "str", v: s, pos });
      i = j + 1;
      continue;
    }
    const m = /^-?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?(?![\w.-])/.exec(src.slice(i));
    if (m) {
      out.push({ t: "num", v: m[0], pos });
      i += m[0].length;
      continue;
    }
    const w = /^[A-Za-z_][\w.:/-]*/.exec(src.slice(i));
    if (w) {
      out.push({ t: "id", v: w[0], pos });
      i += w[0].length;
      continue;
    }
    throw new FilterError(pos, `unexpected character ${JSON.stringify(c)}`);
  }
  out.push({ t: "end", v: "", pos: src.length + 1 });
  return out;
}

const num = (s: string | undefined): number | undefined => {
  if (s === undefined || s.trim() === "") return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
};

const KEYWORDS = new Set(["and", "or", "not", "exists", "startswith", "endswith", "contains"]);

class Parser {
  private i = 0;
  constructor(private readonly toks: Tok[]) {}

  private peek(): Tok {
    return this.toks[this.i]!;
  }
  private next(): Tok {
    return this.toks[this.i++]!;
  }
  private kw(word: string): boolean {
    const t = this.peek();
    if (t.t === "id" && t.v.toLowerCase() === word) {
      this.i++;
      return true;
    }
    return false;
  }

  parse(): Filter {
    const f = this.or();
    const t = this.peek();
    if (t.t !== "end") throw new FilterError(t.pos, `expected and, or or the end, got ${JSON.stringify(t.v)}`);
    return f;
  }

  private or(): Filter {
    let f = this.and();
    while (this.kw("or")) {
      const a = f;
      const b = this.and();
      f = (m) => a(m) || b(m);
    }
    return f;
  }

  private and(): Filter {
    let f = this.not();
    while (this.kw("and")) {
      const a = f;
      const b = this.not();
      f = (m) => a(m) && b(m);
    }
    return f;
  }

  private not(): Filter {
    if (this.kw("not")) {
      const f = this.not();
      return (m) => !f(m);
    }
    return this.primary();
  }

  private key(): string {
    const t = this.next();
    if (t.t === "str" || (t.t === "id" && !KEYWORDS.has(t.v.toLowerCase()))) return t.v;
    throw new FilterError(t.pos, t.t === "end" ? "expected a metadata key, got the end" : `expected a metadata key, got ${JSON.stringify(t.v)}`);
  }

  private value(): { s: string; n: number | undefined } {
    const t = this.next();
    if (t.t === "str") return { s: t.v, n: undefined };
    if (t.t === "num") return { s: t.v, n: Number(t.v) };
    if (t.t === "id" && !KEYWORDS.has(t.v.toLowerCase())) return { s: t.v, n: undefined };
    throw new FilterError(t.pos, t.t === "end" ? "expected a value, got the end" : `expected a value, got ${JSON.stringify(t.v)}`);
  }

  private primary(): Filter {
    const t = this.peek();
    if (t.t === "(") {
      this.i++;
      const f = this.or();
      const close = this.next();
      if (close.t !== ")") throw new FilterError(close.pos, `expected ")", got ${close.t === "end" ? "the end" : JSON.stringify(close.v)}`);
      return f;
    }
    if (this.kw("exists")) {
      const k = this.key();
      return (m) => Object.prototype.hasOwnProperty.call(m, k);
    }
    const k = this.key();
    if (this.kw("exists")) return (m) => Object.prototype.hasOwnProperty.call(m, k);
    for (const word of ["startswith", "endswith", "contains"] as const) {
      if (this.kw(word)) {
        const v = this.value().s;
        if (word === "startswith") return (m) => m[k]?.startsWith(v) === true;
        if (word === "endswith") return (m) => m[k]?.endsWith(v) === true;
        return (m) => m[k]?.includes(v) === true;
      }
    }
    const op = this.next();
    if (op.t !== "op") throw new FilterError(op.pos, `expected an operator (= != < <= > >= startswith endswith contains exists) after ${JSON.stringify(k)}, got ${op.t === "end" ? "the end" : JSON.stringify(op.v)}`);
    const v = this.value();
    switch (op.v) {
      case "=":
        return v.n === undefined ? (m) => m[k] === v.s : (m) => m[k] === v.s || num(m[k]) === v.n;
      case "!=":
        return v.n === undefined ? (m) => m[k] !== v.s : (m) => m[k] !== v.s && num(m[k]) !== v.n;
    }
    if (v.n === undefined) throw new FilterError(op.pos, `${op.v} compares numbers; ${JSON.stringify(v.s)} is not a number`);
    const n = v.n;
    const cmp: Record<string, (a: number) => boolean> = { "<": (a) => a < n, "<=": (a) => a <= n, ">": (a) => a > n, ">=": (a) => a >= n };
    const c = cmp[op.v]!;
    return (m) => {
      const a = num(m[k]);
      return a !== undefined && c(a);
    };
  }
}

/** Parses a filter; "" matches every member. Throws FilterError naming the position. */
export function parseFilter(src: string): Filter {
  const s = src.trim();
  if (s === "") return () => true;
  if (s.startsWith("{")) {
    let obj: unknown;
    try {
      obj = JSON.parse(s);
    } catch (e) {
      throw new FilterError(src.indexOf("{") + 1, `invalid JSON shorthand: ${(e as Error).message}`);
    }
    if (!obj || typeof obj !== "object" || Array.isArray(obj)) throw new FilterError(1, "the JSON shorthand is an object of key: value");
    const pairs = Object.entries(obj as Record<string, unknown>).map(([k, v]) => {
      if (v === null || typeof v === "object") throw new FilterError(1, `the JSON shorthand's values are strings, numbers or booleans (${JSON.stringify(k)})`);
      return [k, String(v)] as const;
    });
    return (m) => pairs.every(([k, v]) => m[k] === v || (num(v) !== undefined && num(m[k]) === num(v)));
  }
  return new Parser(lex(src)).parse(); // positions count in the filter as sent
}
