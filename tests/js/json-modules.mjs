// The parser's build imports its JSON schemas without `with { type: "json" }`, which bundlers accept and
// Node refuses; this hook serves them as modules. Loaded with `node --import ./json-modules.mjs`.
import { register } from "node:module";

register(
  "data:text/javascript," +
    encodeURIComponent(`
import { readFile } from "node:fs/promises";
export async function load(url, context, next) {
  if (!url.endsWith(".json")) return next(url, context);
  const source = await readFile(new URL(url), "utf8");
  return { format: "module", source: "export default " + source + ";", shortCircuit: true };
}`),
);
