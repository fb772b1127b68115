// Validates custom resources against the JSON schemas that the
// @kubernetes-models packages generate from the upstream CRDs (Istio
// 1.29 CRDs, prometheus-operator v1 API types, External Secrets).
// Usage: node validate.mjs RESOURCES.json [--unvalidated KIND,...]
//   (RESOURCES.json: a JSON array of objects)
// Prints one line per resource; exits 1 if any fails or has no schema,
// except the kinds named after --unvalidated, which are reported as
// "skip" (kinds whose CRD schema no package publishes).
import { readFileSync } from "node:fs";

const PACKAGES = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "security.istio.io": "@kubernetes-models/istio",
  "networking.istio.io": "@kubernetes-models/istio",
  "telemetry.istio.io": "@kubernetes-models/istio",
  "extensions.istio.io": "@kubernetes-models/istio",
  "external-secrets.io": "@kubernetes-models/external-secrets",
};

const flag = process.argv.indexOf("--unvalidated");
const unvalidated = new Set(flag > 0 ? (process.argv[flag + 1] ?? "").split(",") : []);

const docs = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const doc of docs) {
  const [group, version] = doc.apiVersion.split("/");
  const name = `${doc.kind}/${doc.metadata?.name} (${doc.apiVersion})`;
  if (unvalidated.has(doc.kind)) {
    console.log(`skip ${name}: no schema published for this kind`);
    continue;
  }
  const pkg = PACKAGES[group];
  let Model;
  try {
    if (!pkg || !version) throw new Error("no package for this API group");
    Model = (await import(`${pkg}/${group}/${version}/${doc.kind}`))[doc.kind];
    if (typeof Model !== "function") throw new Error("kind not exported");
  } catch (err) {
    console.log(`FAIL ${name}: no schema available (${err.message})`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok   ${name}`);
  } catch (err) {
    console.log(`FAIL ${name}: ${err.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
