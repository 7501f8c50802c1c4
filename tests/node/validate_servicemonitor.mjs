// Validates ServiceMonitor objects (the Prometheus Operator's CRD) offline against the CRD's
// OpenAPI schema, as compiled into the npm package @kubernetes-models/prometheus-operator
// (types, required fields, patterns such as durations; the schema lets unknown fields through,
// as the API server would prune them, so tests/tests/kubernetes.rs checks those).
//
// usage: node validate_servicemonitor.mjs MODELS_DIR < objects.json
//   MODELS_DIR: the npm prefix the package is installed in (scripts/install-clients.sh:
//   .local/clients/k8s-models); stdin: a JSON array of objects.
// Prints `VALID <name>` or `INVALID <name>: <why>` per object; exits 1 if any is invalid.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node validate_servicemonitor.mjs MODELS_DIR < objects.json");
  process.exit(2);
}
const file = join(dir, "node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js");
const { ServiceMonitor } = await import(pathToFileURL(file).href);
let failed = false;
for (const object of JSON.parse(readFileSync(0, "utf8"))) {
  const name = object?.metadata?.name;
  try {
    if (object.apiVersion !== ServiceMonitor.apiVersion || object.kind !== ServiceMonitor.kind) {
      throw new Error(`not a ${ServiceMonitor.apiVersion} ${ServiceMonitor.kind}`);
    }
    new ServiceMonitor(object).validate();
    console.log(`VALID ${name}`);
  } catch (e) {
    console.log(`INVALID ${name}: ${String(e.message).replace(/\s+/g, " ")}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
