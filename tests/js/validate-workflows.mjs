// Validate workflow files and action.yml files with GitHub's own parser (@actions/workflow-parser,
// published by GitHub from actions/languageservices). Prints one JSON object: {file: [errors...]}.
// Run as `node --import ./json-modules.mjs validate-workflows.mjs FILE...`. Exit 0 when every file is clean, 1 when any has errors, 2 on usage.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseWorkflow, convertWorkflowTemplate, NoOperationTraceWriter } from "@actions/workflow-parser";
import { parseAction } from "@actions/workflow-parser/actions/action-parser";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate-workflows.mjs FILE...");
  process.exit(2);
}
const report = {};
for (const name of files) {
  const file = { name, content: readFileSync(name, "utf8") };
  const trace = new NoOperationTraceWriter();
  const errors = [];
  if (basename(name) === "action.yml" || basename(name) === "action.yaml") {
    const result = parseAction(file, trace);
    errors.push(...result.context.errors.getErrors().map((e) => e.message));
  } else {
    const result = parseWorkflow(file, trace);
    errors.push(...result.context.errors.getErrors().map((e) => e.message));
    if (result.value !== undefined && errors.length === 0) {
      const template = await convertWorkflowTemplate(result.context, result.value);
      errors.push(...(template.errors ?? []).map((e) => e.Message ?? e.message ?? String(e)));
    }
  }
  report[name] = errors;
}
console.log(JSON.stringify(report));
process.exit(Object.values(report).some((e) => e.length) ? 1 : 0);
