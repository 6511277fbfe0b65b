/**
 * The outbox acceptance run (outbox.test.ts) with the postgres store: every
 * messaging backend behind a PostgreSQL outbox. A file of its own so that each
 * store's run stays within the test runner's per-file limit.
 */
process.env.PRISM_OUTBOX_STORE = "postgres";
await import("./outbox.test.js");
