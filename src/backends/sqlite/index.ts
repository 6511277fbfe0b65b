// Placeholder: replaced by the real sqlite driver.
import { z } from "zod";
import type { BackendDriver } from "../driver.js";
export const driver: BackendDriver<Record<string, never>> = {
  type: "sqlite",
  description: "in-process store (placeholder)",
  interfaces: [],
  optionsSchema: z.object({}).strict(),
  create() {
    throw new Error("sqlite: not implemented yet");
  },
};
