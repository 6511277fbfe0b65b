#!/usr/bin/env node
// The `prism` command: the compiled CLI (npm run build compiles src → dist/src).
import "../dist/src/cli/main.js";
