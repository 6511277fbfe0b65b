// Placeholder: replaced by the real memstore driver.
import { z } from "zod";
import type { BackendDriver } from "../driver.js";
export const driver: BackendDriver<Record<string, never>> = {
  type: "memstore",
  description: "in-process store (placeholder)",
  interfaces: [],
  optionsSchema: z.object({}).strict(),
  create() {
    throw new Error("memstore: not implemented yet");
  },
};
