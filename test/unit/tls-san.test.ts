// Parsing Node's `subjectaltname` string into PeerCertificate.san entries (src/ingress/tls.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSubjectAltName } from "../../src/ingress/tls.js";
import { principalFromCert, sanValue } from "../../src/auth/mtls.js";

test("subjectaltname entries, including JSON-quoted values with delimiters", () => {
  assert.deepEqual(parseSubjectAltName(undefined), []);
  assert.deepEqual(parseSubjectAltName("DNS:a.example, IP Address:10.0.0.1, URI:spiffe://td/w"), ["DNS:a.example", "IP Address:10.0.0.1", "URI:spiffe://td/w"]);
  assert.deepEqual(parseSubjectAltName('DNS:x, URI:"spiffe://td/a, b", email:"q\\"u@x"'), ["DNS:x", "URI:spiffe://td/a, b", 'email:q"u@x']);
  assert.equal(sanValue("IP Address:10.0.0.1"), "10.0.0.1");
});

test("principalFromCert: CN or first SAN; a missing field is UNAUTHENTICATED", () => {
  const cert = { subjectCN: "svc", san: ["URI:spiffe://td/w", "DNS:svc.local"], fingerprint256: "AA" };
  assert.equal(principalFromCert(cert).id, "svc");
  assert.equal(principalFromCert(cert, "san").id, "spiffe://td/w");
  assert.throws(() => principalFromCert({ san: [], fingerprint256: "AA" }), (e: any) => e.code === 16 && /no subject CN/.test(e.message));
});
