"""Sign an export folder, and check a signed one before anything in it is used.

    python -m export.sign --new-key keys/                       # keys/signing_key.pem (private) + .pub
    python -m export.sign dist/efficientnet_lite0 --key keys/signing_key.pem        # sign an existing export
    python -m export.sign --verify dist/efficientnet_lite0 --trust keys/signing_key.pub

The signature is `model.sig` in the folder: an OpenSSF Model Signing bundle as the `model-signing` package
(1.1.1) writes it with an EC key, offline (a DSSE envelope over an in-toto statement listing each file's
sha256), made here with `cryptography` (model-signing cannot share an environment with litert-torch; see
sign_folder). The reference verifier accepts it: `python -m model_signing verify key DIR --signature
DIR/model.sig --public_key KEY.pub` (in `make signing`'s .venv-signing). It covers every file of the folder
except the signature itself, git files and what the benchmark writes later (UNSIGNED); that list is inside
the signed statement, so every verifier honours the same one. `verify_folder` is our own check of the same
format, written to refuse in one sentence; the Kotlin (android_demo/core Provenance.kt) and JavaScript
(web_demo/src/provenance.js) ports say the same sentences (docs/signing.md has the format, the order of the
checks and the sentences).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import UserError, run_cli
from core.io import sha256_file
from core.signed_files import HINT_CHARS, SIGNATURE, differences

PRIVATE_KEY = "signing_key.pem"
PUBLIC_KEY = "signing_key.pub"
# What the benchmark (and the page's benchmark) write into an export folder after it was signed: left out of
# the signature, and named in it, so that a benchmarked export still verifies everywhere.
BENCHMARK_OUTPUTS = (
    "benchmark.json",
    "benchmark.csv",
    "benchmark.md",
    "benchmark.html",
    "benchmark.log",
    "benchmark_history.jsonl",
    "benchmark_web.json",
    "benchmark_figures",
)
UNSIGNED = (SIGNATURE, *BENCHMARK_OUTPUTS)
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")  # what model-signing leaves out by default
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
REPORTS = ("export_report.md", "export_report.html")  # what export.sign rewrites before it signs


class SignatureError(UserError):
    """A signed export that does not verify; its message is the sentence every verifier says (docs/signing.md)."""


@dataclass(frozen=True)
class SignedStatement:
    """What a verified model.sig says: the folder name it was made for, each file's sha256, what it leaves out."""

    name: str
    resources: dict[str, str]  # name relative to the folder ("golden/case0.png") -> sha256 hex
    ignored: tuple[str, ...]
    key_hint: str

    def is_ignored(self, name: str) -> bool:
        return _ignored(name, self.ignored)


def _ignored(name: str, ignored: Iterable[str]) -> bool:
    """Whether `name` equals an ignored path or lies under one (model-signing's rule)."""
    path = PurePosixPath(name)
    return any(path == PurePosixPath(i) or PurePosixPath(i) in path.parents for i in ignored)


# ---- keys ----


def _hint(public_key: Any) -> str:
    """The key hint of model-signing: sha256 of the public key's PEM text (SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def read_trusted_key(path: str | os.PathLike[str]) -> Any:
    """The EC public key at `path`; SignatureError (the "bad key" sentence) when it is not one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise SignatureError(f"the trusted key {path} is not a PEM EC public key (no such file)") from None
    except (OSError, ValueError, TypeError) as exc:
        detail = "a private key: give its .pub" if b"PRIVATE KEY" in _head(path) else str(exc).split("\n")[0]
        raise SignatureError(f"the trusted key {path} is not a PEM EC public key ({detail})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVES:
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        raise SignatureError(f"the trusted key {path} is not a PEM EC public key ({kind}; P-256, P-384 or P-521)")
    return key


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(200)
    except OSError:
        return b""


def read_signing_key(path: str | os.PathLike[str]) -> Any:
    """The EC private key at `path` (unencrypted PEM); UserError saying what is wrong with it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(path)
    if not path.is_file():
        raise UserError(f"the signing key {path} does not exist: make one with python -m export.sign --new-key DIR")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except TypeError:
        raise UserError(
            f"the signing key {path} is encrypted: give an unencrypted copy (openssl pkcs8 -topk8 -nocrypt)"
        ) from None
    except (OSError, ValueError) as exc:
        if b"PUBLIC KEY" in _head(path):
            raise UserError(f"the signing key {path} is a public key: give the private .pem it was made with") from None
        first = str(exc).split("\n")[0].rstrip(".")
        raise UserError(f"the signing key {path} is not a PEM private key ({first})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in CURVES:
        raise UserError(f"the signing key {path} is not an EC key on P-256, P-384 or P-521: make one with --new-key")
    return key


def key_description(public_key: Any) -> dict[str, str]:
    """{"curve": "P-256", "key_hint": ...}: what the report says about the key an export is signed with."""
    return {"curve": CURVES[public_key.curve.name], "key_hint": _hint(public_key)}


def new_key(folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a P-256 key pair into `folder` (signing_key.pem, owner-only, and signing_key.pub); refuses to
    overwrite one, and refuses an export folder (a private key never travels with the models it signs)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from core.io import check_folder_path, write_text

    folder = Path(folder)
    check_folder_path(folder, "--new-key")
    if (folder / "parity.json").exists() or (folder / SIGNATURE).exists():
        raise UserError(f"{folder} is an export folder: keep the private key elsewhere (e.g. --new-key keys/)")
    private, public = folder / PRIVATE_KEY, folder / PUBLIC_KEY
    for existing in (private, public):
        if existing.exists():
            raise UserError(f"{existing} already exists: give another folder, or remove it first")
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    fd, tmp = tempfile.mkstemp(prefix=f".{PRIVATE_KEY}.", dir=folder)  # mode 0600 from the start
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(pem)
        os.replace(tmp, private)
    finally:
        Path(tmp).unlink(missing_ok=True)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_text(public, pub.decode("ascii"))
    return private, public


# ---- signing ----


def statement_bytes(folder: Path) -> bytes:
    """The in-toto statement of `folder` as model-signing 1.1 writes it: every plain file not in UNSIGNED or
    git's files, by its name relative to the folder, with its sha256; the root digest over them in that order."""
    ignored = [*UNSIGNED, *GIT_PATHS]
    resources = []
    for path in plain_entries(folder):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and not _ignored(name, ignored):
            resources.append({"digest": sha256_file(path), "algorithm": "sha256", "name": name})
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": folder.name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": resources,
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": ignored,
            },
        },
    }
    return json.dumps(statement, indent=2).encode("utf-8")


def sign_folder(folder: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> dict[str, str]:
    """Sign every file of `folder` but UNSIGNED with the private key at `key_path`, offline; writes
    folder/model.sig in one rename. Returns key_description of the key.

    The bundle is the one model-signing 1.1.1 writes for `sign key` (a test holds it to that package's own
    verifier). We write it ourselves: model-signing needs typing-extensions >= 4.14.1 (sigstore-models), which
    litert-torch's xdsl 0.28 forbids (< 4.13), so the two cannot share an environment; the reference lives in
    its own (`make signing`)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    folder, key_path = Path(folder), Path(key_path)
    key = read_signing_key(key_path)
    if folder.resolve() in key_path.resolve().parents:
        raise UserError(f"the signing key {key_path} lies inside {folder}: keep the private key out of the export")
    payload = statement_bytes(folder)
    digest = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]
    signature = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(digest))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": _hint(key.public_key())}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    for leftover in folder.parent.glob(f".{folder.name}.sig-*"):  # of a signing killed before its cleanup
        shutil.rmtree(leftover, ignore_errors=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{folder.name}.sig-", dir=folder.parent))
    try:  # written beside the folder, then renamed in: never a half-written model.sig
        (tmp_dir / SIGNATURE).write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_dir / SIGNATURE, folder / SIGNATURE)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return key_description(key.public_key())


def reference_python() -> Path | None:
    """The Python of the environment holding model-signing, the format's reference (MELANOMA_SIGNING_PYTHON, or
    `make signing`'s .venv-signing); None when there is none."""
    configured = os.environ.get("MELANOMA_SIGNING_PYTHON")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    local = Path(__file__).resolve().parents[1] / ".venv-signing" / "bin" / "python"
    return local if local.is_file() else None


# ---- verifying ----


def _malformed(detail: str) -> SignatureError:
    return SignatureError(f"malformed signature: {SIGNATURE} is not a signed model statement ({detail})")


def _field(mapping: Any, key: str, kind: type, where: str) -> Any:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _malformed(f"no {where}{key}")
    return value


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not base64") from None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the ECDSA signature is over."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def verify_bundle(bundle: bytes | None, trusted_key: Any) -> SignedStatement:
    """Checks 2 to 5 of docs/signing.md on model.sig's bytes (None: there is none); the signed statement."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if bundle is None:
        raise SignatureError(f"no signature: {SIGNATURE} is missing, and a trusted key requires a signed model")
    try:
        data = json.loads(bundle.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _malformed("not JSON") from None
    if not isinstance(data, dict) or data.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise _malformed(f"mediaType is not {BUNDLE_MEDIA_TYPE}")
    envelope = _field(data, "dsseEnvelope", dict, "")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise _malformed(f"payloadType is not {PAYLOAD_TYPE}")
    signatures = _field(envelope, "signatures", list, "dsseEnvelope.")
    if len(signatures) != 1:
        raise _malformed(f"{len(signatures)} signatures instead of one")
    signature = _b64(_field(signatures[0], "sig", str, "signatures[0]."), "the signature")
    payload = _b64(_field(envelope, "payload", str, "dsseEnvelope."), "the payload")
    statement = _statement(payload)
    material = data.get("verificationMaterial")
    public = material.get("publicKey") if isinstance(material, dict) else None
    hint = public.get("hint") if isinstance(public, dict) else None
    if hint is not None and not isinstance(hint, str):
        raise _malformed("the key hint is not text")
    trusted_hint = _hint(trusted_key)
    if hint and hint != trusted_hint:
        raise SignatureError(
            f"signed by another key: {SIGNATURE} names key {str(hint)[:HINT_CHARS]}, "
            f"not the trusted key {trusted_hint[:HINT_CHARS]}"
        )
    digest = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[trusted_key.curve.key_size]
    try:
        trusted_key.verify(signature, pae(PAYLOAD_TYPE, payload), ec.ECDSA(digest))
    except (InvalidSignature, ValueError):
        raise SignatureError(
            f"invalid signature: {SIGNATURE} does not verify with the trusted key {trusted_hint[:HINT_CHARS]}"
        ) from None
    return SignedStatement(statement[0], statement[1], statement[2], trusted_hint)


def _statement(payload: bytes) -> tuple[str, dict[str, str], tuple[str, ...]]:
    """(subject name, resources, ignored paths) of the in-toto statement, checked for shape and root digest."""
    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _malformed("the payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise _malformed(f"the statement's _type is not {STATEMENT_TYPE}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise _malformed(f"the predicateType is not {PREDICATE_TYPE}")
    subjects = _field(statement, "subject", list, "statement.")
    if len(subjects) != 1:
        raise _malformed(f"{len(subjects)} subjects instead of one")
    root = _field(_field(subjects[0], "digest", dict, "subject."), "sha256", str, "subject.digest.")
    predicate = _field(statement, "predicate", dict, "statement.")
    serialization = _field(predicate, "serialization", dict, "predicate.")
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise _malformed("the serialization is not sha256 per file")
    ignored = serialization.get("ignore_paths", [])
    if not isinstance(ignored, list) or not all(isinstance(i, str) for i in ignored):
        raise _malformed("ignore_paths is not a list of names")
    resources: dict[str, str] = {}
    concatenated = hashlib.sha256()
    for entry in _field(predicate, "resources", list, "predicate."):
        name = _field(entry, "name", str, "resource.")
        value = _field(entry, "digest", str, "resource.")
        if entry.get("algorithm") != "sha256" or len(value) != 64:
            raise _malformed(f"the digest of {name} is not a sha256")
        if not all(c in "0123456789abcdefABCDEF" for c in value):  # bytes.fromhex would also take spaces
            raise _malformed(f"the digest of {name} is not hexadecimal")
        concatenated.update(bytes.fromhex(value))
        resources[name] = value.lower()
    if concatenated.hexdigest() != root.lower():
        raise _malformed("the subject's digest does not match its resources")
    return str(subjects[0].get("name", "")), resources, tuple(ignored)


def check_files(statement: SignedStatement, held: Mapping[str, Path], required: Iterable[str]) -> None:
    """Check 6 of docs/signing.md: `held` (signed name -> the file holding it) against the statement; `required`
    are the signed names that must be held. SignatureError on the first difference, in the documented order."""
    # No held name is let off by the ignored paths (folder_files has left out what the statement ignores).
    problem = differences(statement.resources, held, required)
    if problem:
        raise SignatureError(problem)


def plain_entries(folder: Path) -> list[Path]:
    """Every entry under `folder`, sorted; UserError for a symbolic link or anything neither a file nor a folder
    (the reference refuses both, ignored paths included, and so do we, before signing and when verifying)."""
    if folder.is_symlink():
        raise SignatureError(f"{folder} is a symbolic link: give the export folder itself")
    entries = sorted(folder.rglob("*"))
    for path in entries:
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise SignatureError(f"{name} is a symbolic link: a signed export holds plain files only")
        if not (path.is_file() or path.is_dir()):
            raise SignatureError(f"{name} is not a plain file: a signed export holds plain files only")
    return entries


def folder_files(folder: Path, statement: SignedStatement) -> dict[str, Path]:
    """Every file under `folder` the statement does not ignore (name relative to the folder -> path)."""
    held: dict[str, Path] = {}
    for path in plain_entries(folder):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and not statement.is_ignored(name):
            held[name] = path
    return held


def verify_folder(folder: str | os.PathLike[str], trust: str | os.PathLike[str], lock: bool = True) -> SignedStatement:
    """Verify folder/model.sig with the trusted public key and every file of the folder against it (what the
    reference verifier checks); SignatureError with the one sentence when anything differs. Under a shared
    lock on the folder (`lock`; False for a caller that holds one), so that an export or a benchmark writing
    it is named instead of read half-written."""
    from core.io import exclusive

    folder = Path(folder)
    key = read_trusted_key(trust)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: give the export folder python -m export.all wrote")
    with exclusive(folder, "signature check", shared=True) if lock else contextlib.nullcontext():
        signature = folder / SIGNATURE
        bundle = signature.read_bytes() if signature.is_file() and not signature.is_symlink() else None
        statement = verify_bundle(bundle, key)
        check_files(statement, folder_files(folder, statement), statement.resources)
    return statement


def verify_artifact(path: str | os.PathLike[str], trust: str | os.PathLike[str]) -> SignedStatement:
    """Verify the export folder holding `path` (a file, or an .mlpackage folder) and that the signature lists
    it: what runners.load(path, trust=...) does before it loads anything."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: give a file of a signed export folder")
    folder = path.parent
    statement = verify_folder(folder, trust)
    name = path.name
    covered = name in statement.resources or any(n.startswith(f"{name}/") for n in statement.resources)
    if not covered:
        raise SignatureError(f"{name} was added after signing: the signature does not list it")
    return statement


# ---- the command ----


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.sign",
        description="Sign an export folder with an EC key (OpenSSF Model Signing, offline), make a key pair, or "
        "verify a signed folder.",
    )
    p.add_argument("folder", nargs="?", help="the export folder (python -m export.all's --out)")
    p.add_argument("--key", help="the private key (PEM, EC P-256/384/521) to sign FOLDER with")
    p.add_argument("--new-key", metavar="DIR", help=f"write a new P-256 pair: DIR/{PRIVATE_KEY} and DIR/{PUBLIC_KEY}")
    p.add_argument("--verify", action="store_true", help="verify FOLDER against --trust instead of signing it")
    p.add_argument("--trust", help="the public key (PEM) --verify checks FOLDER's signature with")
    return p


def sign_export(folder: Path, key: Path) -> dict[str, str]:
    """Sign an existing export: its report is rewritten to say so, then the whole folder is signed."""
    from core.io import exclusive, write_with
    from core.parity_file import ParityReport
    from export.report import rewrite_documents

    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: give the export folder python -m export.all wrote")
    read_signing_key(key)
    report = ParityReport.load(folder, hint="sign the folder python -m export.all wrote")
    with exclusive(folder, "export"):
        description = key_description(read_signing_key(key).public_key())
        plain_entries(folder)
        reports = {name: (folder / name).read_bytes() for name in REPORTS if (folder / name).is_file()}
        rewrite_documents(folder, report.data, description)
        try:
            return sign_folder(folder, key)
        except BaseException:  # the report must not say "Signed" over an unsigned folder
            for name, data in reports.items():
                write_with(folder / name, lambda tmp, d=data: tmp.write_bytes(d))
            raise


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.new_key:
        if args.folder or args.key or args.verify:
            raise UserError("--new-key DIR makes a key pair and takes nothing else")
        private, public = new_key(Path(args.new_key))
        print(f"wrote {private} (private: keep it secret, never in an export) and {public} (give it to the apps)")
        return 0
    if not args.folder:
        raise UserError("give the export folder: python -m export.sign DIR --key KEY.pem (or --verify --trust)")
    folder = Path(args.folder)
    if args.verify:
        if args.key:
            raise UserError("--verify checks with --trust PUBLIC_KEY.pem; --key (a private key) signs")
        if not args.trust:
            raise UserError("--verify needs --trust PUBLIC_KEY.pem, the key the folder must be signed with")
        statement = verify_folder(folder, Path(args.trust))
        print(f"{folder}: signature verified, {len(statement.resources)} files as signed")
        return 0
    if not args.key:
        raise UserError("give the private key: python -m export.sign DIR --key KEY.pem (or --new-key DIR to make one)")
    if args.trust:
        raise UserError("--trust goes with --verify")
    description = sign_export(folder, Path(args.key))
    print(f"signed {folder} ({description['curve']} key {description['key_hint'][:HINT_CHARS]}): {folder / SIGNATURE}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
