/**
 * The `prism` command (bin/prism.js). Commands load lazily: `validate` and
 * the client commands never load the server. In a node:cluster worker the
 * same entry point runs the worker instead of the CLI.
 */
import cluster from "node:cluster";
import { ADDR_HELP, APPLY_USAGE, AUDIT_USAGE, BACKENDS_USAGE, KEYS_USAGE, EXIT_USAGE, KV_USAGE, MIGRATE_USAGE, NS_USAGE, PATTERNS_USAGE, SERVE_USAGE, UsageError, VALIDATE_USAGE } from "./usage.js";

const VERSION = "0.1.0";

const USAGE = `prism ${VERSION}: a data access gateway

${[SERVE_USAGE, VALIDATE_USAGE, APPLY_USAGE, KV_USAGE, NS_USAGE, BACKENDS_USAGE, PATTERNS_USAGE, MIGRATE_USAGE, AUDIT_USAGE, KEYS_USAGE, "usage: prism --version"].map((u) => u.replace("usage: ", "  ")).join("\n")}

${ADDR_HELP}
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "serve":
      return (await import("./serve.js")).serve(rest);
    case "__resolve-config": // internal: prism serve validates its config in a child process (cli/config.ts)
      return (await import("./config.js")).printResolvedConfig(rest);
    case "validate":
      return (await import("./validate.js")).validate(rest);
    case "kv":
      return (await import("./kv.js")).kvCommand(rest);
    case "ns":
      return (await import("./control.js")).nsCommand(rest);
    case "apply":
      return (await import("./apply.js")).applyCommand(rest);
    case "backends":
      return (await import("./control.js")).backendsCommand(rest);
    case "migrate":
      return (await import("./migrate.js")).migrateCommand(rest);
    case "audit":
      return (await import("../audit/cli.js")).auditCommand(rest);
    case "keys":
      return (await import("../pii/cli.js")).keysCommand(rest);
    case "patterns":
      return (await import("./control.js")).patternsCommand(rest);
    case "--version":
    case "version":
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(cmd ? `prism: unknown command "${cmd}"\n\n${USAGE}` : USAGE);
      return EXIT_USAGE;
  }
}

if (cluster.isWorker) {
  (await import("../workers/worker.js")).runWorker();
} else {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
        process.stderr.write(`prism: ${(e as Error).message}\n`);
        process.exit(EXIT_USAGE);
      }
      process.stderr.write(`prism: ${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
}
