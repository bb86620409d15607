// Run by secret_manager_crosscheck.sh: Google's official Node.js Secret Manager client
// (@google-cloud/secret-manager, REST transport: `fallback: true`) against the emulator.
// createSecret (labels), addSecretVersion, accessSecretVersion (bytes and CRC32C), a second
// principal refused with PERMISSION_DENIED until it is bound to the accessor role, deleteSecret.
import assert from "node:assert/strict";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.SM_DIR, "package.json"));
const { SecretManagerServiceClient } = require("@google-cloud/secret-manager");
const { OAuth2Client } = require("google-auth-library");

const url = new URL(process.env.HTTPS_BASE);
const clientWith = (token) => {
  const authClient = new OAuth2Client();
  authClient.setCredentials({ access_token: token, expiry_date: Date.now() + 3_600_000 });
  return new SecretManagerServiceClient({ fallback: true, apiEndpoint: url.hostname, port: Number(url.port), protocol: "https", authClient });
};
const owner = clientWith(process.env.OWNER_TOKEN);
const vm = clientWith(process.env.VM_TOKEN);
const parent = "projects/emu-project";

const [secret] = await owner.createSecret({ parent, secretId: "cmf-js-1", secret: { replication: { automatic: {} }, labels: { "managed-by": "cmf", "cmf-job": "js" } } });
assert.equal(secret.name, `${parent}/secrets/cmf-js-1`);
assert.equal(secret.labels["managed-by"], "cmf");
const value = Buffer.from("hf_FAKE-js-secret\u0000\u00ff", "latin1");
const [version] = await owner.addSecretVersion({ parent: secret.name, payload: { data: value } });
assert.equal(version.name, `${secret.name}/versions/1`);
const [got] = await owner.accessSecretVersion({ name: version.name });
assert.ok(Buffer.from(got.payload.data).equals(value), "bytes round-trip");
console.log(`ok create, addVersion, access: ${version.name}, crc32c ${got.payload.dataCrc32c}`);

// gax maps REST errors to gRPC codes, or (for a streamed GET) leaves the HTTP answer in a GaxiosError
const status = (e) => e.code ?? e.status ?? e.response?.status;
await assert.rejects(vm.accessSecretVersion({ name: version.name }), (e) => (status(e) === 7 || status(e) === 403) && /PERMISSION_DENIED/.test(String(e.message)),
  "PERMISSION_DENIED without a binding");
const [policy] = await owner.getIamPolicy({ resource: secret.name });
policy.bindings = [{ role: "roles/secretmanager.secretAccessor", members: [process.env.VM_MEMBER] }];
await owner.setIamPolicy({ resource: secret.name, policy });
const [vmGot] = await vm.accessSecretVersion({ name: version.name });
assert.ok(Buffer.from(vmGot.payload.data).equals(value));
console.log("ok the bound service account reads it, and only then");

await owner.deleteSecret({ name: secret.name });
await assert.rejects(owner.accessSecretVersion({ name: version.name }), (e) => status(e) === 5 || status(e) === 404, "NOT_FOUND after delete");
console.log("ok deleted");
