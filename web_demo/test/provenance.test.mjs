/**
 * provenance.js in Node, without an export: the DER -> raw ECDSA conversion (sign bytes, short and long
 * integers, malformed DER), the DSSE pre-authentication encoding, and a bundle built here with a WebCrypto
 * key (verifies; every check refuses in its turn, in the doc's order). tests/test_web_demo.py holds the
 * same module against bundles the reference CLI signed and the sentences export/sign.py says.
 *
 *     node --test web_demo/test/provenance.test.mjs
 */

import assert from 'node:assert/strict';
import {describe, test} from 'node:test';

import {
  ContractError,
  NO_WEBCRYPTO,
  SENTENCES,
  canonicalPem,
  checkFiles,
  derToRaw,
  pae,
  readTrustedKey,
  sha256Hex,
  verifySignature,
} from '../src/contract.js';

const PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const subtle = globalThis.crypto.subtle;
const bytes = (text) => new TextEncoder().encode(text);
const b64 = (data) => Buffer.from(data).toString('base64');

/** DER INTEGER of an unsigned big-endian number: leading zeros stripped, a 0x00 sign byte when needed. */
function derInteger(raw) {
  let i = 0;
  while (i < raw.length - 1 && raw[i] === 0) i++;
  const value = [...raw.subarray(i)];
  if (value[0] & 0x80) value.unshift(0);
  return [0x02, value.length, ...value];
}

function toDer(raw) {
  const body = [...derInteger(raw.subarray(0, 32)), ...derInteger(raw.subarray(32))];
  return Uint8Array.from([0x30, body.length, ...body]);
}

async function refuses(promise, sentence) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof ContractError, String(err));
    assert.equal(err.message, sentence);
    return true;
  });
}

async function keyPair() {
  const pair = await subtle.generateKey({name: 'ECDSA', namedCurve: 'P-256'}, true, ['sign', 'verify']);
  const pem = canonicalPem(new Uint8Array(await subtle.exportKey('spki', pair.publicKey)));
  return {pair, pem, trusted: await readTrustedKey(pem, 'test.pub')};
}

/** A folder's statement, signed as model_signing does, as model.sig text. */
async function signedBundle(pair, files, {hint, edit = (s) => s} = {}) {
  const resources = [];
  for (const [name, data] of Object.entries(files)) {
    resources.push({name, algorithm: 'sha256', digest: await sha256Hex(data)});
  }
  const raw = Uint8Array.from(resources.flatMap((r) => [...Buffer.from(r.digest, 'hex')]));
  const statement = edit({
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{name: 'export', digest: {sha256: await sha256Hex(raw)}}],
    predicateType: 'https://model_signing/signature/v1.0',
    predicate: {
      resources,
      serialization: {method: 'files', hash_type: 'sha256', allow_symlinks: false, ignore_paths: ['model.sig', 'benchmark_figures']},
    },
  });
  const payload = bytes(JSON.stringify(statement, null, 2));
  const sig = new Uint8Array(await subtle.sign({name: 'ECDSA', hash: 'SHA-256'}, pair.privateKey, pae(PAYLOAD_TYPE, payload)));
  return JSON.stringify({
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: {publicKey: {hint}, tlogEntries: []},
    dsseEnvelope: {payload: b64(payload), payloadType: PAYLOAD_TYPE, signatures: [{sig: b64(toDer(sig)), keyid: ''}]},
  });
}

describe('derToRaw', () => {
  test('pads short integers and drops the sign byte', () => {
    const r = new Uint8Array(32).fill(0xff); // high bit: DER adds a 0x00 byte (33 bytes)
    const s = new Uint8Array(32);
    s[30] = 0x01;
    s[31] = 0x02; // a 2-byte integer
    const raw = derToRaw(toDer(Uint8Array.from([...r, ...s])));
    assert.deepEqual([...raw.subarray(0, 32)], [...r]);
    assert.deepEqual([...raw.subarray(32)], [...s]);
    const zero = derToRaw(Uint8Array.from([0x30, 6, 0x02, 1, 0, 0x02, 1, 7]));
    assert.equal(zero.length, 64);
    assert.equal(zero[63], 7);
    assert.ok(zero.subarray(0, 63).every((b) => b === 0));
  });

  test('refuses what is not a DER signature of two 32-byte integers', () => {
    const good = [0x30, 6, 0x02, 1, 5, 0x02, 1, 7];
    assert.equal(derToRaw(Uint8Array.from([...good, 0])), null); // trailing bytes
    assert.equal(derToRaw(Uint8Array.from([0x31, ...good.slice(1)])), null); // not a SEQUENCE
    assert.equal(derToRaw(Uint8Array.from([0x30, 6, 0x02, 1, 0x85, 0x02, 1, 7])), null); // negative
    assert.equal(derToRaw(Uint8Array.from([0x30, 3, 0x02, 1, 5])), null); // one integer
    const long = [0x02, 33, 1, ...new Uint8Array(32)]; // 33 significant bytes
    assert.equal(derToRaw(Uint8Array.from([0x30, 0x81, long.length + 3, ...long, 0x02, 1, 7])), null);
  });
});

describe('pae', () => {
  test('is DSSEv1, the lengths in bytes, the type and the payload', () => {
    const out = pae('t/x', bytes('héllo'));
    assert.equal(new TextDecoder().decode(out), 'DSSEv1 3 t/x 6 héllo');
  });
});

describe('verifySignature and checkFiles', () => {
  const files = {'m.tflite': bytes('model'), 'golden.json': bytes('{}'), 'golden/a.png': bytes('a'), 'golden/b.png': bytes('b')};

  test('a bundle signed here verifies, and the files held are checked', async () => {
    const {pair, trusted} = await keyPair();
    const statement = await verifySignature(await signedBundle(pair, files, {hint: trusted.hint}), trusted);
    assert.equal(statement.resources.size, 4);
    await checkFiles(statement, new Map(Object.entries(files)), ['m.tflite']);
    // An ignored name lets no held file off: a model passed off as benchmark_figures/x.tflite is "added".
    await refuses(
      checkFiles(statement, {...files, 'benchmark_figures/x.tflite': bytes('evil')}, ['benchmark_figures/x.tflite']),
      SENTENCES.added('benchmark_figures/x.tflite'),
    );
    await refuses(
      checkFiles(statement, {...files, 'm.tflite': bytes('Model'), 'golden.json': bytes('[]')}),
      `${SENTENCES.changed('golden.json')} (and 1 more)`,
    );
    const {'golden/a.png': _, ...renamed} = files;
    await refuses(checkFiles(statement, {...renamed, 'golden/c.png': bytes('a')}), `${SENTENCES.removed('golden/a.png')} (and 1 more)`);
    await refuses(checkFiles(statement, {...files, 'golden/c.png': bytes('c')}), SENTENCES.added('golden/c.png'));
    await refuses(checkFiles(statement, {'golden/a.png': files['golden/a.png'], 'golden/b.png': files['golden/b.png']}, ['m.tflite']), SENTENCES.removed('m.tflite'));
  });

  test('each check refuses in its turn', async () => {
    const {pair, trusted} = await keyPair();
    const other = await keyPair();
    await refuses(verifySignature(null, trusted), SENTENCES.missing());
    await refuses(verifySignature('not json', trusted), SENTENCES.malformed('not JSON'));
    await refuses(readTrustedKey(null, 'k.pub'), SENTENCES.badKey('k.pub', 'no such file'));
    const good = JSON.parse(await signedBundle(pair, files, {hint: trusted.hint}));
    const wrongType = JSON.stringify({...good, mediaType: 'x'});
    await refuses(verifySignature(wrongType, trusted), SENTENCES.malformed(`mediaType is not ${good.mediaType}`));
    const rootless = await signedBundle(pair, files, {hint: trusted.hint, edit: (s) => ({...s, subject: [{name: 'x', digest: {sha256: '0'.repeat(64)}}]})});
    await refuses(verifySignature(rootless, trusted), SENTENCES.malformed("the subject's digest does not match its resources"));
    await refuses(verifySignature(await signedBundle(other.pair, files, {hint: other.trusted.hint}), trusted), SENTENCES.otherKey(other.trusted.hint, trusted.hint));
    // No hint: the signature check decides.
    await refuses(verifySignature(await signedBundle(other.pair, files, {hint: ''}), trusted), SENTENCES.badSignature(trusted.hint));
    const flipped = structuredClone(good);
    const der = Buffer.from(flipped.dsseEnvelope.signatures[0].sig, 'base64');
    der[der.length - 1] ^= 1;
    flipped.dsseEnvelope.signatures[0].sig = der.toString('base64');
    await refuses(verifySignature(JSON.stringify(flipped), trusted), SENTENCES.badSignature(trusted.hint));
    for (const hint of [0, {}, ['x']]) {
      const odd = JSON.stringify({...good, verificationMaterial: {publicKey: {hint}, tlogEntries: []}});
      await refuses(verifySignature(odd, trusted), SENTENCES.malformed('the key hint is not text'));
    }
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes(JSON.stringify(good))]);
    await refuses(verifySignature(bom, trusted), SENTENCES.malformed('not JSON'));
  });

  test('a key that is not a PEM P-256 public key is refused', async () => {
    await refuses(readTrustedKey('hello', 'k.pub'), SENTENCES.badKey('k.pub', 'no PUBLIC KEY block'));
    const p384 = await subtle.generateKey({name: 'ECDSA', namedCurve: 'P-384'}, true, ['sign', 'verify']);
    const pem = canonicalPem(new Uint8Array(await subtle.exportKey('spki', p384.publicKey)));
    await refuses(readTrustedKey(pem, 'k.pub'), SENTENCES.badKey('k.pub', 'not an EC P-256 key, the curve a phone verifies'));
  });

  test('without crypto.subtle it says to use https or localhost', async () => {
    const real = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
    Object.defineProperty(globalThis, 'crypto', {value: {}, configurable: true});
    try {
      await refuses(readTrustedKey('x', 'k.pub'), NO_WEBCRYPTO);
    } finally {
      Object.defineProperty(globalThis, 'crypto', real);
    }
    assert.match(NO_WEBCRYPTO, /HTTPS.*localhost/);
  });
});
