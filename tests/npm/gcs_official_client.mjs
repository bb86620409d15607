// Fidelity cross-check of the emulator's GCS service with Google's own Node.js client
// (@google-cloud/storage), pointed at the emulator with its `apiEndpoint` option (TLS trusted via
// NODE_EXTRA_CA_CERTS); with a custom endpoint the client sends no credentials. Every step
// checks what came back; any mismatch or client error exits non-zero.
//
// Why not STORAGE_EMULATOR_HOST here: the Node client (8.x, storage.js) uses that variable
// verbatim as the JSON API base (no "/storage/v1" appended) but appends "/upload/storage/v1" for
// uploads, unlike the C++/Go/Python clients; apiEndpoint gives the real GCS paths for both.
//
//   CMF_GCS_ENDPOINT=https://127.0.0.1:N NODE_EXTRA_CA_CERTS=ca.pem node gcs_official_client.mjs BUCKET
import { createRequire } from 'node:module';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(process.env.CMF_GCS_NODE_MODULES + '/');
const { Storage, CRC32C } = require('@google-cloud/storage');

const bucketName = process.argv[2] || 'bkt';
let failures = 0;
function check(cond, what) {
  if (cond) {
    console.log(`ok   ${what}`);
  } else {
    console.log(`FAIL ${what}`);
    failures++;
  }
}
const crc32cOf = (buf) => {
  const c = new CRC32C();
  c.update(buf);
  return c.toString();
};
const md5Of = (buf) => createHash('md5').update(buf).digest('base64');

const storage = new Storage({ projectId: 'emu-project', apiEndpoint: process.env.CMF_GCS_ENDPOINT });
check(storage.apiEndpoint === process.env.CMF_GCS_ENDPOINT, `client uses the emulator (${storage.apiEndpoint})`);
const bucket = storage.bucket(bucketName);
const dir = mkdtempSync(join(tmpdir(), 'cmf-gcs-node-'));

try {
  // 1. simple (multipart) upload with custom metadata, then stat.
  const small = Buffer.from('hello from the official client\n');
  await bucket.file('small/hello.txt').save(small, {
    resumable: false, contentType: 'text/plain', metadata: { metadata: { variant: 'q8_0' } },
  });
  const [md] = await bucket.file('small/hello.txt').getMetadata();
  check(md.size === String(small.length) || md.size === small.length, `stat size ${md.size}`);
  check(typeof md.generation === 'string' && /^[0-9]+$/.test(md.generation), `generation is a numeric string (${md.generation})`);
  check(md.crc32c === crc32cOf(small), `crc32c ${md.crc32c} = client's CRC32C`);
  check(md.md5Hash === md5Of(small), `md5Hash ${md.md5Hash}`);
  check(md.contentType === 'text/plain', `contentType ${md.contentType}`);
  check(md.metadata && md.metadata.variant === 'q8_0', 'custom metadata round-trips');

  // 2. create-only precondition: the second write is a 412.
  await bucket.file('status/q8.built').save('1', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
  let code = 0;
  try {
    await bucket.file('status/q8.built').save('2', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
  } catch (e) {
    code = e.code;
  }
  check(code === 412, `ifGenerationMatch=0 on an existing object -> 412 (got ${code})`);

  // 3. resumable upload of a file in several 256 KiB-multiple chunks.
  const big = randomBytes(5 * 1024 * 1024 + 4321);
  const bigPath = join(dir, 'big.bin');
  writeFileSync(bigPath, big);
  await bucket.upload(bigPath, { destination: 'models/big.bin', resumable: true, chunkSize: 1024 * 1024 });
  const [bmd] = await bucket.file('models/big.bin').getMetadata();
  check(Number(bmd.size) === big.length, `resumable upload size ${bmd.size}`);
  check(bmd.crc32c === crc32cOf(big), 'resumable upload crc32c');
  // single-shot resumable (no chunkSize)
  await bucket.upload(bigPath, { destination: 'models/big2.bin', resumable: true });
  check((await bucket.file('models/big2.bin').getMetadata())[0].md5Hash === md5Of(big), 'single-request resumable md5');

  // 4. downloads: whole (the client validates crc32c/md5 from x-goog-hash) and ranged.
  const [got] = await bucket.file('models/big.bin').download({ validation: 'crc32c' });
  check(Buffer.compare(got, big) === 0, 'download (crc32c validated) equals upload');
  const [got5] = await bucket.file('models/big.bin').download({ validation: 'md5' });
  check(Buffer.compare(got5, big) === 0, 'download (md5 validated) equals upload');
  const [part] = await bucket.file('models/big.bin').download({ start: 1000, end: 1999 });
  check(Buffer.compare(part, big.subarray(1000, 2000)) === 0, 'ranged download bytes 1000-1999');
  const dest = join(dir, 'down.bin');
  await bucket.file('models/big.bin').download({ destination: dest });
  check(Buffer.compare(readFileSync(dest), big) === 0, 'download to file');

  // 5. list: prefix + delimiter, and pagination with maxResults.
  const [files, , resp] = await bucket.getFiles({ delimiter: '/', autoPaginate: false });
  check(files.length === 0, `top level has no objects (${files.map((f) => f.name)})`);
  const prefixes = (resp && resp.prefixes) || [];
  check(JSON.stringify(prefixes) === JSON.stringify(['models/', 'small/', 'status/']), `prefixes ${JSON.stringify(prefixes)}`);
  // one object per page, following nextPageToken by hand
  const names = [];
  let pages = 0;
  for (let query = { maxResults: 1, autoPaginate: false }; query; pages++) {
    const [page, next] = await bucket.getFiles(query);
    names.push(...page.map((f) => f.name));
    query = next ? { ...next, autoPaginate: false } : null;
  }
  check(pages === 4, `4 pages of 1 (got ${pages})`);
  check(JSON.stringify(names) === JSON.stringify(['models/big.bin', 'models/big2.bin', 'small/hello.txt', 'status/q8.built']),
    `paged listing ${JSON.stringify(names)}`);
  const [under] = await bucket.getFiles({ prefix: 'models/' });
  check(under.length === 2, `prefix models/ -> ${under.length} objects`);

  // 6. delete; exists() afterwards is false; stat of a missing object is a 404.
  await bucket.file('models/big2.bin').delete();
  check((await bucket.file('models/big2.bin').exists())[0] === false, 'deleted object does not exist');
  code = 0;
  try {
    await bucket.file('nope').getMetadata();
  } catch (e) {
    code = e.code;
  }
  check(code === 404, `missing object -> 404 (got ${code})`);
} catch (e) {
  console.log(`FAIL unexpected error: ${e && e.stack ? e.stack : JSON.stringify(e, null, 1)}`);
  failures++;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
process.exit(failures ? 1 : 0);
