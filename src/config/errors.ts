/** A configuration the user must fix: one line per problem, each naming the file and the path. (No zod here: see defaults.ts.) */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[], source: string) {
    super(problems.map((p) => `${source}: ${p}`).join("\n"));
  }
}
