"""What the standard library can check of a signed export (docs/signing.md): the file digests model.sig lists,
the key hint of a PEM public key, and check 6, the files against the signed digests, with its sentences.

export/sign.py verifies the ECDSA signature (with `cryptography`) and uses `differences` for check 6; the asset
copiers (android_demo/copy-assets.py, web_demo/build.py) run before any virtual environment exists, cannot
verify a signature, and use all of it to refuse early what the app or the page would refuse. Standard
library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.errors import UserError
from core.io import sha256_file

SIGNATURE = "model.sig"
HINT_CHARS = 16  # how much of a key hint the sentences show
_PEM_PUBLIC_KEY = re.compile(r"-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]*)-----END PUBLIC KEY-----")


def pem_key_hint(text: str) -> str | None:
    """model-signing's key hint of the PEM public key in `text`: the sha256 of its canonical PEM text (the DER
    in base64 lines of 64 characters); None when `text` holds no PUBLIC KEY block in base64."""
    block = _PEM_PUBLIC_KEY.search(text)
    if block is None:
        return None
    try:
        body = base64.b64encode(base64.b64decode("".join(block.group(1).split()), validate=True)).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    lines = "".join(body[i : i + 64] + "\n" for i in range(0, len(body), 64))
    return hashlib.sha256(f"-----BEGIN PUBLIC KEY-----\n{lines}-----END PUBLIC KEY-----\n".encode()).hexdigest()


def read_unverified(path: Path, trusted_hint: str | None = None) -> dict[str, str]:
    """The file digests (name -> sha256) the bundle at `path` lists, read without checking its signature, after
    its key hint, when it names one, is compared with `trusted_hint`.

    Raises:
        UserError: the bundle is not a signed model statement, or names another key (the sentences of
            docs/signing.md).
    """
    try:
        bundle = json.loads(path.read_bytes())
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"], validate=True))
        resources = {str(r["name"]): str(r["digest"]) for r in statement["predicate"]["resources"]}
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        raise UserError(
            f"malformed signature: {SIGNATURE} is not a signed model statement "
            "(not a JSON bundle with an in-toto statement of resources)"
        ) from None
    material = bundle.get("verificationMaterial") if isinstance(bundle, dict) else None
    public = material.get("publicKey") if isinstance(material, dict) else None
    hint = public.get("hint") if isinstance(public, dict) else None
    if trusted_hint is not None and isinstance(hint, str) and hint and hint != trusted_hint:
        raise UserError(
            f"signed by another key: {SIGNATURE} names key {hint[:HINT_CHARS]}, "
            f"not the trusted key {trusted_hint[:HINT_CHARS]}"
        )
    return resources


def differences(signed: Mapping[str, str], held: Mapping[str, Path], required: Iterable[str]) -> str | None:
    """Check 6: `held` (signed name -> the file holding it) against the signed digests. The sentence of the
    first difference, with " (and N more)", in the documented order (changed, then removed: a name of
    `required` the statement lists that is not held, then added: a held name it does not list, whatever its
    ignored paths say, since a phone holds only files it uses); None when there is none."""
    changed = sorted(n for n, path in held.items() if n in signed and sha256_file(path) != signed[n])
    removed = sorted(n for n in set(required) if n in signed and n not in held)
    added = sorted(n for n in held if n not in signed)
    problems = [f"{n} was changed after signing: its sha256 is not the signed one" for n in changed]
    problems += [f"{n} was removed after signing: the signature lists it" for n in removed]
    problems += [f"{n} was added after signing: the signature does not list it" for n in added]
    if not problems:
        return None
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
