import { test } from "node:test";
import assert from "node:assert/strict";
import { FilterError, parseFilter } from "../../src/patterns/multicast/filter.js";

const M = (o: Record<string, string>) => o;
const sensor = M({ type: "temperature", floor: "3", location: "building-a", name: "sensor-12", zone: "b" });
const other = M({ type: "humidity", floor: "10", location: "building-b", name: "probe-7" });

test("the PRD's examples work verbatim", () => {
  assert.equal(parseFilter('{"location": "building-a"}')(sensor), true);
  assert.equal(parseFilter('{"location": "building-a"}')(other), false);
  assert.equal(parseFilter('type = "temperature" and floor = 3')(sensor), true);
  assert.equal(parseFilter('type = "temperature" and floor = 3')(other), false);
});

test("operators: = != on strings and numbers, ordering on numbers, string matches, exists", () => {
  const cases: [string, boolean, boolean][] = [
    ["floor = 3", true, false],
    ["floor = 3.0", true, false],
    ["floor != 3", false, true],
    ["floor < 5", true, false],
    ["floor <= 3", true, false],
    ["floor > 3", false, true],
    ["floor >= 10", false, true],
    ['name startswith "sensor-"', true, false],
    ['name endswith "-7"', false, true],
    ['location contains "ing-b"', false, true],
    ["exists zone", true, false],
    ["zone exists", true, false],
    ["not exists zone", false, true],
    ["type == temperature", true, false],
    ["type = 'humidity'", false, true],
    ['(floor >= 2 and floor < 5) or name startswith "probe"', true, true],
    ['not (type = "temperature" or floor > 5)', false, false],
    ["TYPE = temperature", false, false],
    ['type = "temperature" AND NOT zone = "a"', true, false],
    ["", true, true],
  ];
  for (const [f, a, b] of cases) {
    assert.equal(parseFilter(f)(sensor), a, `${f} on sensor`);
    assert.equal(parseFilter(f)(other), b, `${f} on other`);
  }
  // Ordering needs a number on the member side too.
  assert.equal(parseFilter("name < 5")(sensor), false);
});

test("syntax errors name their position", () => {
  const bad: [string, RegExp][] = [
    ["floor = ", /^position 9: expected a value, got the end$/],
    ["floor 3", /^position 7: expected an operator .* after "floor", got "3"$/],
    ["(floor = 3", /^position 11: expected "\)", got the end$/],
    ['type = "temperature" and', /^position 25: expected a metadata key, got the end$/],
    ["floor = 3 floor = 4", /^position 11: expected and, or or the end, got "floor"$/],
    ["floor < high", /^position 7: < compares numbers; "high" is not a number$/],
    ['name = "open', /^position 8: unterminated string$/],
    ["floor = 3 & zone = b", /^position 11: unexpected character "&"$/],
    ["{not json", /^position 1: invalid JSON shorthand/],
    ['{"a": {"b": 1}}', /^position 1: the JSON shorthand's values are strings, numbers or booleans/],
  ];
  for (const [f, re] of bad) {
    assert.throws(() => parseFilter(f), (e: unknown) => e instanceof FilterError && re.test(e.message), f);
  }
});
