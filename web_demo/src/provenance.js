/**
 * Signed exports, checked where the model runs: the JavaScript verifier of docs/signing.md (the port of
 * export/sign.py and of the Android app's Provenance.kt), in the browser and in Node 20 alike.
 *
 * An export folder signed by `python -m export.sign` holds `model.sig`, an OpenSSF Model Signing bundle
 * (Sigstore bundle v0.3, key-based, offline): a DSSE envelope whose payload is an in-toto statement listing
 * every file of the folder with its sha256, signed with ECDSA P-256 / SHA-256. Given the signer's public key
 * (a PEM text the page's build copies as `signing_key.pub`), this module checks, in the order the doc fixes
 * and with its sentences word for word:
 *   1. the trusted key is a PEM P-256 public key;            4. the bundle's key hint is the trusted key's;
 *   2. model.sig exists;                                     5. the signature verifies with it;
 *   3. the bundle parses (media type, one signature, payload  6. the files held: changed, then removed, then
 *      type, in-toto statement, root digest);                   added, each group sorted, "(and N more)".
 * Only WebCrypto (`globalThis.crypto.subtle`) is used: one code path for the page and for Node, no
 * dependency. Browsers offer it in a secure context only (https, or localhost); elsewhere the check refuses
 * with a sentence saying so rather than running an unchecked model.
 *
 *     import {readTrustedKey, verifySignature, checkFiles} from './provenance.js';
 *     const trusted = await readTrustedKey(pemText, 'signing_key.pub');
 *     const statement = await verifySignature(sigBytes, trusted);      // steps 2-5 (sigBytes null: missing)
 *     await checkFiles(statement, new Map([['model_int8.tflite', bytes], ...]), ['model_int8.tflite']);
 *
 * Every failure is a ContractError whose message is the one sentence of docs/signing.md.
 */

import {ContractError} from './errors.js';

/** The signature's file name in an export folder (and in the page's build). */
export const SIGNATURE_FILE = 'model.sig';
export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE = 'https://model_signing/signature/v1.0';
/** The signed golden images a phone checks for removal: `golden/<name>.png`, one level deep. */
const GOLDEN_PNG = /^golden\/[^/]+\.png$/;
const P256_BYTES = 32; // r and s of a P-256 signature, each as WebCrypto wants them

// --------------------------------------------------------------------------------------------- sentences

/** The sentences of docs/signing.md ("The sentences"), identical in Python, Kotlin and JavaScript. */
export const SENTENCES = {
  missing: () => `no signature: ${SIGNATURE_FILE} is missing, and a trusted key requires a signed model`,
  malformed: (detail) => `malformed signature: ${SIGNATURE_FILE} is not a signed model statement (${detail})`,
  otherKey: (hint, trusted) =>
    `signed by another key: ${SIGNATURE_FILE} names key ${hint.slice(0, 16)}, not the trusted key ${trusted.slice(0, 16)}`,
  badSignature: (trusted) =>
    `invalid signature: ${SIGNATURE_FILE} does not verify with the trusted key ${trusted.slice(0, 16)}`,
  changed: (name) => `${name} was changed after signing: its sha256 is not the signed one`,
  removed: (name) => `${name} was removed after signing: the signature lists it`,
  added: (name) => `${name} was added after signing: the signature does not list it`,
  badKey: (path, detail) => `the trusted key ${path} is not a PEM EC public key (${detail})`,
};

/**
 * Refusal where WebCrypto is missing: a page served over plain http to another device is not a secure
 * context, and browsers withhold crypto.subtle there.
 */
export const NO_WEBCRYPTO =
  'this browser offers no WebCrypto here (crypto.subtle exists only in a secure context), so the signed model ' +
  'cannot be checked: serve the page over HTTPS, or open it on this machine at http://localhost or http://127.0.0.1';

/** crypto.subtle, or the refusal that says why it is missing and how to get it. */
function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new ContractError(NO_WEBCRYPTO);
  return s;
}

// ------------------------------------------------------------------------------------------------ bytes

const encoder = new TextEncoder();

/** Text or bytes as a Uint8Array (text as UTF-8). */
function asBytes(data) {
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`bytes or text expected, got ${Object.prototype.toString.call(data)}`);
}

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function fromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Strict base64 to bytes, as Python's `base64.b64decode(text, validate=True)` reads it (the standard
 * alphabet, no whitespace, the padding a final partial group needs); null when it is not base64.
 */
export function fromBase64(text) {
  if (typeof text !== 'string') return null;
  const match = /^([A-Za-z0-9+/]*)(={0,2})$/.exec(text);
  if (!match) return null;
  const [, data, pad] = match;
  const rest = data.length % 4;
  if (rest === 1 || (rest === 2 && pad.length !== 2) || (rest === 3 && pad.length !== 1)) return null;
  const binary = atob(data + '='.repeat((4 - rest) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 8192) binary += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(binary);
}

/**
 * sha256 of `data` as lower-case hex.
 * @param {Uint8Array|ArrayBuffer|string} data
 * @returns {Promise<string>}
 */
export async function sha256Hex(data) {
  return toHex(new Uint8Array(await subtle().digest('SHA-256', asBytes(data))));
}

// -------------------------------------------------------------------------------------------------- key

/**
 * A public key as canonical PEM text: the header line, the base64 of its DER SubjectPublicKeyInfo in lines
 * of 64 characters, the footer line, each ending in "\n" (what Python's cryptography writes; the key hint
 * is the sha256 of this text).
 * @param {Uint8Array} der
 * @returns {string}
 */
export function canonicalPem(der) {
  const body = toBase64(der).match(/.{1,64}/g) || [];
  return `-----BEGIN PUBLIC KEY-----\n${body.join('\n')}\n-----END PUBLIC KEY-----\n`;
}

/**
 * Read the trusted key (check 1): a PEM "PUBLIC KEY" block holding an EC P-256 SubjectPublicKeyInfo (the
 * phones take P-256; Python also P-384 and P-521).
 *
 * @param {string|Uint8Array|null} pem the key file's text; null when there is no such file
 * @param {string} path how the sentence names the key (its path, or "signing_key.pub" in the page)
 * @returns {Promise<{key: CryptoKey, hint: string, path: string}>} hint: sha256 hex of its canonical PEM
 * @throws {ContractError} "the trusted key {path} is not a PEM EC public key (...)"
 */
export async function readTrustedKey(pem, path) {
  const s = subtle();
  const bad = (detail) => new ContractError(SENTENCES.badKey(path, detail));
  if (pem === null || pem === undefined) throw bad('no such file');
  const text = typeof pem === 'string' ? pem : new TextDecoder('utf-8', {fatal: false}).decode(asBytes(pem));
  if (text.slice(0, 200).includes('PRIVATE KEY')) throw bad('a private key: give its .pub');
  const block = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]*)-----END PUBLIC KEY-----/.exec(text);
  if (!block) throw bad('no PUBLIC KEY block');
  const der = fromBase64(block[1].replace(/\s+/g, ''));
  if (!der || der.length === 0) throw bad('its PUBLIC KEY block is not base64');
  let key;
  try {
    key = await s.importKey('spki', der, {name: 'ECDSA', namedCurve: 'P-256'}, true, ['verify']);
  } catch {
    throw bad('not an EC P-256 key, the curve a phone verifies');
  }
  // The hint is over the key as Python re-serializes it; exportKey gives that canonical DER.
  const canonical = new Uint8Array(await s.exportKey('spki', key));
  return {key, hint: await sha256Hex(canonicalPem(canonical)), path};
}

// -------------------------------------------------------------------------------------------- signature

/**
 * The DSSE pre-authentication encoding: "DSSEv1 " + len(T) + " " + T + " " + len(P) + " " + P, lengths in
 * bytes as decimal text.
 * @param {string} payloadType T
 * @param {Uint8Array} payload P, the decoded payload bytes
 * @returns {Uint8Array}
 */
export function pae(payloadType, payload) {
  const type = encoder.encode(payloadType);
  const head = encoder.encode(`DSSEv1 ${type.length} ${payloadType} ${payload.length} `);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  out.set(payload, head.length);
  return out;
}

/**
 * A DER ECDSA signature (SEQUENCE {INTEGER r, INTEGER s}) as the raw r || s WebCrypto verifies: each
 * integer without its sign byte, left-padded with zeros to `size` bytes. Strict DER, as OpenSSL reads it for
 * Python: minimal lengths and integers, positive, nothing after the sequence.
 *
 * @param {Uint8Array} der
 * @param {number} [size] bytes per integer (32 for P-256)
 * @returns {Uint8Array|null} 2 * size bytes, or null when `der` is not such a signature
 */
export function derToRaw(der, size = P256_BYTES) {
  let at = 0;
  const length = () => {
    if (at >= der.length) return -1;
    const first = der[at++];
    if (first < 0x80) return first;
    if (first !== 0x81 || at >= der.length || der[at] < 0x80) return -1; // < 256 bytes, minimal
    return der[at++];
  };
  if (der[at++] !== 0x30) return null;
  const total = length();
  if (total < 0 || at + total !== der.length) return null;
  const out = new Uint8Array(2 * size);
  for (let k = 0; k < 2; k++) {
    if (der[at++] !== 0x02) return null;
    const n = length();
    if (n <= 0 || at + n > der.length) return null;
    let value = der.subarray(at, at + n);
    at += n;
    if (value[0] & 0x80) return null; // negative: not an ECDSA r or s
    if (value[0] === 0 && n > 1) {
      if (!(value[1] & 0x80)) return null; // a zero byte DER would not write
      value = value.subarray(1);
    }
    if (value.length > size) return null;
    out.set(value, (k + 1) * size - value.length);
  }
  return at === der.length ? out : null;
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Throws the "malformed" sentence with `detail` (the details are export/sign.py's, check for check). */
function malformed(detail) {
  throw new ContractError(SENTENCES.malformed(detail));
}

/** mapping[key] when it is of `kind` ('string', 'list', 'object'), else the "no {where}{key}" refusal. */
function field(mapping, key, kind, where) {
  const value = isObject(mapping) ? mapping[key] : undefined;
  const ok = kind === 'list' ? Array.isArray(value) : kind === 'object' ? isObject(value) : typeof value === kind;
  if (!ok) malformed(`no ${where}${key}`);
  return value;
}

function base64Field(text, what) {
  const bytes = fromBase64(text);
  if (bytes === null) malformed(`${what} is not base64`);
  return bytes;
}

function parseJson(bytes) {
  // ignoreBOM keeps a byte-order mark in the text, so JSON.parse refuses it as Python's json does.
  return JSON.parse(new TextDecoder('utf-8', {fatal: true, ignoreBOM: true}).decode(bytes));
}

/**
 * The in-toto statement of the payload (part of check 3): its shape, and a root digest that matches its
 * resources (the sha256 of their raw digests, concatenated in the order listed).
 *
 * @param {Uint8Array} payload
 * @returns {Promise<{subject: string, root: string, resources: Map<string, string>, ignorePaths: string[]}>}
 */
async function parseStatement(payload) {
  let statement;
  try {
    statement = parseJson(payload);
  } catch {
    malformed('the payload is not JSON');
  }
  if (!isObject(statement) || statement._type !== STATEMENT_TYPE) malformed(`the statement's _type is not ${STATEMENT_TYPE}`);
  if (statement.predicateType !== PREDICATE_TYPE) malformed(`the predicateType is not ${PREDICATE_TYPE}`);
  const subjects = field(statement, 'subject', 'list', 'statement.');
  if (subjects.length !== 1) malformed(`${subjects.length} subjects instead of one`);
  const root = field(field(subjects[0], 'digest', 'object', 'subject.'), 'sha256', 'string', 'subject.digest.');
  const predicate = field(statement, 'predicate', 'object', 'statement.');
  const serialization = field(predicate, 'serialization', 'object', 'predicate.');
  if (serialization.method !== 'files' || serialization.hash_type !== 'sha256') {
    malformed('the serialization is not sha256 per file');
  }
  const ignorePaths = serialization.ignore_paths ?? [];
  if (!Array.isArray(ignorePaths) || !ignorePaths.every((p) => typeof p === 'string')) {
    malformed('ignore_paths is not a list of names');
  }
  const entries = field(predicate, 'resources', 'list', 'predicate.');
  const resources = new Map();
  const raw = new Uint8Array(32 * entries.length);
  entries.forEach((entry, i) => {
    const name = field(entry, 'name', 'string', 'resource.');
    const digest = field(entry, 'digest', 'string', 'resource.');
    if (entry.algorithm !== 'sha256' || digest.length !== 64) malformed(`the digest of ${name} is not a sha256`);
    if (!/^[0-9a-fA-F]{64}$/.test(digest)) malformed(`the digest of ${name} is not hexadecimal`);
    raw.set(fromHex(digest), 32 * i);
    resources.set(name, digest.toLowerCase());
  });
  if ((await sha256Hex(raw)) !== root.toLowerCase()) malformed("the subject's digest does not match its resources");
  const name = isObject(subjects[0]) && subjects[0].name !== undefined ? String(subjects[0].name) : '';
  return {subject: name, root: root.toLowerCase(), resources, ignorePaths};
}

/**
 * The parts of a bundle (check 3), in export/sign.py's order: the media type, the envelope, the payload
 * type, one signature, the payload and its statement. Nothing is verified yet.
 *
 * @param {Uint8Array} bytes model.sig
 */
async function parseBundle(bytes) {
  let bundle;
  try {
    bundle = parseJson(bytes);
  } catch {
    malformed('not JSON');
  }
  if (!isObject(bundle) || bundle.mediaType !== BUNDLE_MEDIA_TYPE) malformed(`mediaType is not ${BUNDLE_MEDIA_TYPE}`);
  const envelope = field(bundle, 'dsseEnvelope', 'object', '');
  if (envelope.payloadType !== PAYLOAD_TYPE) malformed(`payloadType is not ${PAYLOAD_TYPE}`);
  const signatures = field(envelope, 'signatures', 'list', 'dsseEnvelope.');
  if (signatures.length !== 1) malformed(`${signatures.length} signatures instead of one`);
  const signature = base64Field(field(signatures[0], 'sig', 'string', 'signatures[0].'), 'the signature');
  const payload = base64Field(field(envelope, 'payload', 'string', 'dsseEnvelope.'), 'the payload');
  const statement = await parseStatement(payload);
  const material = bundle.verificationMaterial;
  const hint = isObject(material) && isObject(material.publicKey) ? (material.publicKey.hint ?? '') : '';
  if (typeof hint !== 'string') malformed('the key hint is not text');
  return {payload, signature, hint, statement};
}

/**
 * Checks 2-5: model.sig exists, parses, names the trusted key (when it names one) and verifies with it.
 *
 * @param {Uint8Array|ArrayBuffer|string|null|undefined} bundle model.sig's bytes or text; null or undefined
 *   when there is none
 * @param {{key: CryptoKey, hint: string}} trusted what readTrustedKey returned
 * @returns {Promise<{subject: string, root: string, resources: Map<string, string>, ignorePaths: string[]}>}
 *   the signed statement: resource name -> sha256 hex, in the order signed
 * @throws {ContractError} the sentence of the first check that fails
 */
export async function verifySignature(bundle, trusted) {
  subtle();
  if (bundle === null || bundle === undefined) throw new ContractError(SENTENCES.missing());
  const parsed = await parseBundle(asBytes(bundle));
  if (parsed.hint && parsed.hint !== trusted.hint) throw new ContractError(SENTENCES.otherKey(parsed.hint, trusted.hint));
  const raw = derToRaw(parsed.signature);
  const message = pae(PAYLOAD_TYPE, parsed.payload);
  const ok = raw !== null && (await subtle().verify({name: 'ECDSA', hash: 'SHA-256'}, trusted.key, raw, message));
  if (!ok) throw new ContractError(SENTENCES.badSignature(trusted.hint));
  return parsed.statement;
}

// ------------------------------------------------------------------------------------------------ files

/** Whether a statement ignores `name`: it equals an ignored path or lies under one. */
export function isIgnored(statement, name) {
  return statement.ignorePaths.some((p) => name === p || name.startsWith(`${p}/`));
}

/**
 * Code-point order of two ASCII names (what Python's sorted() gives).
 * @param {string} a
 * @param {string} b
 */
function byCodePoint(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Check 6 for what a phone or the page holds ("What a phone checks"): every held file against the resource
 * of its signed name ("changed"); a signed `golden/*.png`, or a name of `required` (the artifact, its spec
 * sidecar where one is held), that is not held ("removed"); a held file the statement does not list, whatever
 * its ignored paths say ("added"). The first sentence of changed, then removed, then added (each sorted), with
 * " (and N more)" when others differ too.
 *
 * @param {{resources: Map<string, string>, ignorePaths: string[]}} statement what verifySignature returned
 * @param {Map<string, Uint8Array>|Object<string, Uint8Array>} held signed name -> the bytes held under it
 * @param {Iterable<string>} [required] signed names that must be held
 * @returns {Promise<void>}
 * @throws {ContractError}
 */
export async function checkFiles(statement, held, required = []) {
  const files = held instanceof Map ? held : new Map(Object.entries(held));
  const changed = [];
  const added = [];
  for (const [name, bytes] of files) {
    const signed = statement.resources.get(name);
    if (signed === undefined) {
      // No held name is let off by the ignored paths: the page holds only files it uses.
      added.push(name);
    } else if ((await sha256Hex(bytes)) !== signed) {
      changed.push(name);
    }
  }
  const expected = new Set(required);
  for (const name of statement.resources.keys()) if (GOLDEN_PNG.test(name)) expected.add(name);
  const removed = [...expected].filter((name) => statement.resources.has(name) && !files.has(name));
  const problems = [
    ...changed.sort(byCodePoint).map(SENTENCES.changed),
    ...removed.sort(byCodePoint).map(SENTENCES.removed),
    ...added.sort(byCodePoint).map(SENTENCES.added),
  ];
  if (problems.length) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    throw new ContractError(problems[0] + more);
  }
}

/**
 * All six checks at once: the trusted key, the signature, then the files held.
 *
 * @param {{trustedKey: string|Uint8Array, keyPath: string, signature: Uint8Array|string|null,
 *   held: Map<string, Uint8Array>, required?: Iterable<string>}} what
 * @returns {Promise<object>} the signed statement
 * @throws {ContractError} the sentence of the first check that fails
 */
export async function verifyHeld({trustedKey, keyPath, signature, held, required = []}) {
  const trusted = await readTrustedKey(trustedKey, keyPath);
  const statement = await verifySignature(signature, trusted);
  await checkFiles(statement, held, required);
  return statement;
}
