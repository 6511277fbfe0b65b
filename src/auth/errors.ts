/**
 * Refusals of the auth layer. A denial names the namespace and permission the
 * caller asked for and nothing else: it reads the same whether the namespace
 * exists or not (authorization runs before the router lookup).
 */
import { Code, PrismError } from "../core/errors.js";
import type { Permission } from "./config.js";

export const authErrors = {
  /** No usable credentials, or credentials that did not verify. HTTP 401 + WWW-Authenticate. */
  unauthenticated: (why: string) => new PrismError(Code.UNAUTHENTICATED, "PRISM_ERR_UNAUTHENTICATED", why),
  denied: (namespace: string, permission: Permission, principal: string) =>
    new PrismError(
      Code.PERMISSION_DENIED,
      "PRISM_ERR_PERMISSION_DENIED",
      `${principal} lacks permission "${permission}" on namespace "${namespace}"`,
    ),
  deniedGlobal: (permission: Permission, principal: string) =>
    new PrismError(Code.PERMISSION_DENIED, "PRISM_ERR_PERMISSION_DENIED", `${principal} lacks permission "${permission}" on all namespaces ("*"), which this gateway-wide call needs`),
  /** The identity provider's keys or the policy service could not be reached: fail closed, retryable. */
  unavailable: (what: string) => new PrismError(Code.UNAVAILABLE, "PRISM_ERR_AUTH_UNAVAILABLE", what),
};
