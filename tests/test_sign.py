"""Signed exports (export/sign.py): what we sign the reference verifier accepts, and every change to a signed
folder is refused in one sentence by our verifier, by the reference verifier, by runners.load(trust=), by the
benchmark and by copy-assets alike. The Kotlin and JavaScript verifiers are held to the same sentences in
test_android_core.py and test_web_demo.py."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from export.sign import SIGNATURE, SignatureError, key_description, new_key, read_trusted_key, verify_folder

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, *args], cwd=cwd, capture_output=True, text=True, check=False)


def _reference_python() -> str:
    """model-signing's environment (make signing), which cannot be the main one; CI must have it."""
    from export.sign import reference_python

    python = reference_python()
    if python is None:
        if os.environ.get("CI") == "true":
            pytest.fail("model-signing, the signature format's reference, is not installed: run `make signing`")
        pytest.skip("model-signing is not installed (make signing): the reference verifier cannot run")
    return str(python)


def _reference(folder: Path, public: Path) -> subprocess.CompletedProcess[str]:
    """The reference verifier of the format (model-signing's own command, in its own environment)."""
    sig = str(folder / SIGNATURE)
    command = [_reference_python(), "-m", "model_signing", "verify", "key", str(folder), "--signature", sig]
    return subprocess.run([*command, "--public_key", str(public)], capture_output=True, text=True, check=False)


def _flip_byte(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[min(at, len(data) - 1)] ^= 0x01
    path.write_bytes(bytes(data))


def _change_digit(path: Path) -> None:
    """One byte of a JSON file changed and the file still JSON: its first digit after the opening bytes."""
    data = bytearray(path.read_bytes())
    at = next(i for i in range(20, len(data)) if chr(data[i]).isdigit())
    data[at] = ord("7") if data[at] != ord("7") else ord("3")
    path.write_bytes(bytes(data))


def _artifact(folder: Path, suffix: str) -> str:
    """The name of the export's int8 artifact with `suffix`, as parity.json lists it."""
    rows = json.loads((folder / "parity.json").read_text())["rows"]
    return next(r["file"] for r in rows if r.get("file", "").endswith(suffix) and r["precision"] == "int8")


def _resign(folder: Path, key: Path) -> None:
    result = _run("-m", "export.sign", str(folder), "--key", str(key))
    assert result.returncode == 0, result.stderr


# name -> (tamper the copied folder, the sentence every verifier must say; {tflite} is the int8 .tflite's name)
TAMPERS: dict[str, tuple[Callable[[Path, Any], None], str]] = {
    "tflite byte": (lambda f, k: _flip_byte(f / _artifact(f, ".tflite")), "{tflite} was changed after signing"),
    "spec sidecar byte": (
        lambda f, k: _flip_byte(f / f"{_artifact(f, '.tflite')}.spec.json", 40),
        "{tflite}.spec.json was changed after signing",
    ),
    "golden.json byte": (lambda f, k: _change_digit(f / "golden.json"), "golden.json was changed after signing"),
    "file renamed": (
        lambda f, k: (f / "roc.png").rename(f / "roc2.png"),
        "roc.png was removed after signing: the signature lists it (and 1 more)",
    ),
    "file added": (lambda f, k: (f / "notes.txt").write_text("x"), "notes.txt was added after signing"),
    "file removed": (lambda f, k: (f / "export.log").unlink(), "export.log was removed after signing"),
    "another key": (lambda f, k: _resign(f, k.other_private), "signed by another key: model.sig names key"),
    "no signature": (lambda f, k: (f / SIGNATURE).unlink(), "no signature: model.sig is missing"),
    "malformed": (lambda f, k: (f / SIGNATURE).write_text("{"), "malformed signature: model.sig is not a signed"),
}


@pytest.fixture(scope="module")
def tampered(signed_export: Path, signing_keys: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tampered copy of the signed export per TAMPERS entry, and the untouched copy under "none"."""
    root = tmp_path_factory.mktemp("tampered")
    folders = {}
    for i, (name, (tamper, _)) in enumerate({"none": (lambda f, k: None, ""), **TAMPERS}.items()):
        folder = root / f"{i}" / "dist"
        shutil.copytree(signed_export, folder)
        tamper(folder, signing_keys)
        folders[name] = folder
    return folders


def test_we_accept_what_the_reference_signs(phone_export: Path, signing_keys: Any, tmp_path: Path) -> None:
    """The other direction: a folder signed by model-signing's own `sign key` verifies with ours, and with one
    byte changed is refused by both."""
    folder = tmp_path / "dist"
    shutil.copytree(phone_export, folder)
    command = [_reference_python(), "-m", "model_signing", "sign", "key", str(folder), "--private_key"]
    signed = subprocess.run(
        [*command, str(signing_keys.private), "--signature", str(folder / SIGNATURE)], capture_output=True, text=True
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr
    statement = verify_folder(folder, signing_keys.public)
    assert "parity.json" in statement.resources and statement.name == "dist"
    _change_digit(folder / "golden.json")
    with pytest.raises(SignatureError, match=r"^golden\.json was changed after signing"):
        verify_folder(folder, signing_keys.public)
    assert _reference(folder, signing_keys.public).returncode != 0


def test_reference_verifier_accepts_what_we_sign(signed_export: Path, signing_keys: Any) -> None:
    result = _reference(signed_export, signing_keys.public)
    assert result.returncode == 0 and "Verification succeeded" in result.stdout, result.stdout + result.stderr
    statement = verify_folder(signed_export, signing_keys.public)
    names = set(statement.resources)
    tflite = _artifact(signed_export, ".tflite")
    # The artifacts, their spec sidecars, parity.json, golden vectors and PNGs, the reports: all signed.
    for name in (tflite, f"{tflite}.spec.json", "parity.json", "golden.json", "export_report.md", "export_report.html"):
        assert name in names, name
    assert any(n.startswith("golden/") and n.endswith(".png") for n in names)
    assert SIGNATURE not in names and "benchmark_figures" in statement.ignored
    assert statement.name == "dist"  # the folder's own name, not a staging name


@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_every_tamper_is_refused_alike(case: str, tampered: dict[str, Path], signing_keys: Any) -> None:
    """Our verifier says the documented sentence; the reference verifier refuses too (naming the file where it
    does); runners.load(trust=) refuses before loading, with the same sentence."""
    from export import runners

    folder = tampered[case]
    expected = TAMPERS[case][1].format(tflite=_artifact(folder, ".tflite"))
    with pytest.raises(SignatureError) as caught:
        verify_folder(folder, signing_keys.public)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value), str(caught.value)
    reference = _reference(folder, signing_keys.public)
    assert reference.returncode != 0, reference.stdout
    if case in ("tflite byte", "spec sidecar byte", "golden.json byte", "file added", "file removed"):
        named = expected.split(" was ")[0]
        assert named in reference.stdout + reference.stderr
    with pytest.raises(SignatureError) as again:
        runners.load(folder / _artifact(folder, ".onnx"), trust=signing_keys.public)
    assert str(again.value) == str(caught.value)


def test_untouched_copy_loads_with_trust(tampered: dict[str, Path], signing_keys: Any) -> None:
    from export import runners

    folder = tampered["none"]
    runner = runners.load(folder / _artifact(folder, ".tflite"), trust=signing_keys.public)
    assert runner.spec.name
    with pytest.raises(SignatureError, match="signed by another key"):
        runners.load(folder / _artifact(folder, ".tflite"), trust=signing_keys.other_public)
    with pytest.raises(SignatureError, match=r"^the trusted key .* is not a PEM EC public key \(a private key"):
        runners.load(folder / _artifact(folder, ".tflite"), trust=signing_keys.private)


def test_a_changed_statement_does_not_verify(signed_export: Path, signing_keys: Any, tmp_path: Path) -> None:
    """The statement rewritten to match a changed file (a consistent root digest, the old signature): the
    signature check, not the digest check, refuses it."""
    import hashlib

    folder = tmp_path / "dist"
    shutil.copytree(signed_export, folder)
    (folder / "golden.json").write_text("{}")
    bundle = json.loads((folder / SIGNATURE).read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    resources = statement["predicate"]["resources"]
    for r in resources:
        if r["name"] == "golden.json":
            r["digest"] = hashlib.sha256(b"{}").hexdigest()
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    statement["subject"][0]["digest"]["sha256"] = root
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (folder / SIGNATURE).write_text(json.dumps(bundle))
    hint = key_description(read_trusted_key(signing_keys.public))["key_hint"][:16]
    with pytest.raises(
        SignatureError, match=f"^invalid signature: model.sig does not verify with the trusted key {hint}$"
    ):
        verify_folder(folder, signing_keys.public)
    assert _reference(folder, signing_keys.public).returncode != 0


@pytest.mark.slow
def test_export_all_signs_and_says_so(tiny_run: Path, signing_keys: Any, tmp_path: Path) -> None:
    """--sign-key signs the staged folder before the swap: the reference verifier accepts the result, the report
    says it is signed; a bad key or a key inside --out is refused before anything is exported."""
    out = tmp_path / "dist"
    base = ["-m", "export.all", "--checkpoint", str(tiny_run / "checkpoint.pt"), "--out", str(out)]
    base += ["--formats", "onnx", "--golden", "2"]
    result = _run(*base, "--sign-key", str(signing_keys.private))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "signed:" in result.stderr
    assert _reference(out, signing_keys.public).returncode == 0
    verify_folder(out, signing_keys.public)
    report = (out / "export_report.md").read_text()
    assert "**Signed** (P-256 key" in report
    leftovers = [*tmp_path.glob(".dist.staging-*"), *tmp_path.glob(".dist.sig-*")]
    assert not leftovers, "a staging or signing folder is left behind"
    before = sorted(p.name for p in out.iterdir())
    for key, words in (
        (signing_keys.public, "is a public key: give the private .pem"),
        (tmp_path / "absent.pem", "does not exist: make one with python -m export.sign --new-key"),
    ):
        bad = _run(*base, "--overwrite", "--sign-key", str(key))
        assert bad.returncode == 2 and words in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    inside = out / "k"
    inside.mkdir()
    shutil.copy(signing_keys.private, inside / "k.pem")
    bad = _run(*base, "--overwrite", "--sign-key", str(inside / "k.pem"))
    assert bad.returncode == 2 and "keep the private key out of the export" in bad.stderr, bad.stderr
    shutil.rmtree(inside)
    assert sorted(p.name for p in out.iterdir()) == before
    unsigned = _run(*base, "--overwrite")
    assert unsigned.returncode == 0 and not (out / SIGNATURE).exists(), "a stale signature survived a re-export"
    assert "**Unsigned.**" in (out / "export_report.md").read_text()


def test_sign_command(phone_export: Path, signing_keys: Any, tmp_path: Path) -> None:
    """export.sign on an existing export rewrites its report to say so and signs it; --new-key refuses an export
    folder and an existing key; --verify prints what it checked; bad input is one sentence."""
    folder = tmp_path / "dist"
    shutil.copytree(phone_export, folder)
    assert "**Unsigned.**" in (folder / "export_report.md").read_text()
    result = _run("-m", "export.sign", str(folder), "--key", str(signing_keys.private))
    assert result.returncode == 0 and "signed" in result.stdout, result.stderr
    assert "**Signed** (P-256 key" in (folder / "export_report.md").read_text()
    assert "Provenance" in (folder / "export_report.html").read_text()
    ok = _run("-m", "export.sign", "--verify", str(folder), "--trust", str(signing_keys.public))
    assert ok.returncode == 0 and "signature verified" in ok.stdout, ok.stderr
    private, public = new_key(tmp_path / "fresh")
    assert (private.stat().st_mode & 0o777) == 0o600 and public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    for argv, words in (
        (["--new-key", str(folder)], "is an export folder: keep the private key elsewhere"),
        (["--new-key", str(tmp_path / "fresh")], "already exists"),
        ([str(folder), "--key", str(signing_keys.public)], "is a public key: give the private .pem"),
        ([str(tmp_path / "nowhere"), "--key", str(signing_keys.private)], "is not a folder"),
        (["--verify", str(folder)], "--verify needs --trust"),
        ([str(folder)], "give the private key"),
    ):
        bad = _run("-m", "export.sign", *argv)
        assert bad.returncode == 2 and words in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_encrypted_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from core.errors import UserError
    from export.sign import read_signing_key

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    (tmp_path / "k.pem").write_bytes(pem)
    with pytest.raises(UserError, match="is encrypted: give an unencrypted copy"):
        read_signing_key(tmp_path / "k.pem")


@pytest.mark.slow
def test_benchmark_trusts_a_signed_export_after_benchmarking_it(
    signed_export: Path, signing_keys: Any, tmp_path: Path
) -> None:
    """The benchmark writes into the signed folder only what the signature leaves out, so the folder still
    verifies (with the reference verifier too) and a second --trust run passes; a tampered folder is refused
    before anything is timed."""
    folder = tmp_path / "dist"
    shutil.copytree(signed_export, folder)
    argv = ["-m", "benchmark", "--artifacts", str(folder), "--runs", "3", "--warmup", "0", "--no-memory"]
    for _ in range(2):
        result = _run(*argv, "--trust", str(signing_keys.public))
        assert result.returncode == 0 and "signature verified" in result.stderr, result.stderr[-3000:]
    assert (folder / "benchmark_figures").is_dir() and (folder / "benchmark.json").is_file()
    verify_folder(folder, signing_keys.public)
    assert _reference(folder, signing_keys.public).returncode == 0
    _flip_byte(folder / "parity.json", 10)
    refused = _run(*argv, "--trust", str(signing_keys.public))
    assert refused.returncode == 2 and "parity.json was changed after signing" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_copy_assets_carries_the_signature(
    signed_export: Path, phone_export: Path, signing_keys: Any, tmp_path: Path
) -> None:
    """copy-assets.py copies model.sig and, with --trust, the pinned key; it checks what it copies against the
    signed sha256s and the key hint, and refuses an unsigned export while a key is pinned."""
    script = str(ROOT / "android_demo" / "copy-assets.py")
    dest = tmp_path / "assets"
    ok = _run(script, str(signed_export), "--dest", str(dest), "--trust", str(signing_keys.public))
    assert ok.returncode == 0 and "copied model.sig" in ok.stdout, ok.stderr
    assert (dest / SIGNATURE).read_bytes() == (signed_export / SIGNATURE).read_bytes()
    assert (dest / "signing_key.pub").read_bytes() == signing_keys.public.read_bytes()
    assert json.loads((dest / "model.json").read_text())["signed"] is True
    other = _run(script, str(signed_export), "--dest", str(tmp_path / "a2"), "--trust", str(signing_keys.other_public))
    assert other.returncode == 2 and "signed by another key: model.sig names key" in other.stderr, other.stderr
    theirs = tmp_path / "theirs" / "dist"
    shutil.copytree(signed_export, theirs)
    _resign(theirs, signing_keys.other_private)
    foreign = _run(script, str(theirs), "--dest", str(dest))  # no --trust: the key already pinned is the judge
    assert foreign.returncode == 2 and "signed by another key" in foreign.stderr, foreign.stderr
    pinned = _run(script, str(phone_export), "--dest", str(dest))
    assert pinned.returncode == 2 and "no signature:" in pinned.stderr and "--no-trust" in pinned.stderr
    assert (dest / SIGNATURE).is_file(), "a refused copy changed the assets"
    unpinned = _run(script, str(phone_export), "--dest", str(dest), "--no-trust")
    assert unpinned.returncode == 0 and not (dest / SIGNATURE).exists() and not (dest / "signing_key.pub").exists()
    changed = tmp_path / "changed" / "dist"
    shutil.copytree(signed_export, changed)
    _change_digit(changed / "golden.json")
    refused = _run(script, str(changed), "--dest", str(tmp_path / "a3"), "--trust", str(signing_keys.public))
    assert refused.returncode == 2 and "golden.json was changed after signing" in refused.stderr, refused.stderr


def test_a_phone_never_lets_a_held_file_off_by_the_ignored_paths(
    signed_export: Path, signing_keys: Any, tmp_path: Path
) -> None:
    """The phones check the files they hold by the names an unsigned manifest gives: a model passed off under an
    ignored name (benchmark.json) is "added", not waved through."""
    from export.sign import check_files, verify_bundle

    statement = verify_bundle((signed_export / SIGNATURE).read_bytes(), read_trusted_key(signing_keys.public))
    assert statement.is_ignored("benchmark.json")
    evil = tmp_path / "evil.tflite"
    evil.write_bytes(b"not the model")
    with pytest.raises(SignatureError, match=r"^benchmark.json was added after signing: the signature does not list"):
        check_files(statement, {"benchmark.json": evil}, ["benchmark.json"])


def test_odd_bundles_links_and_special_files(signed_export: Path, signing_keys: Any, tmp_path: Path) -> None:
    """One sentence, never a traceback, and the reference verifier agrees where it is asked: a key hint that is
    not text, a symbolic link (in an ignored folder too), a FIFO, a folder that is not there; export.sign refuses
    a folder with a link before it rewrites the report."""
    folder = tmp_path / "dist"
    shutil.copytree(signed_export, folder)
    good = json.loads((folder / SIGNATURE).read_text())
    for hint, words in ((0, "malformed signature: model.sig is not a signed model statement (the key hint is not"),):
        odd = json.loads(json.dumps(good))
        odd["verificationMaterial"]["publicKey"]["hint"] = hint
        (folder / SIGNATURE).write_text(json.dumps(odd))
        with pytest.raises(SignatureError, match=f"^{re.escape(words)}"):
            verify_folder(folder, signing_keys.public)
    odd = json.loads(json.dumps(good))
    odd["verificationMaterial"]["publicKey"] = "not an object"  # no hint: the signature decides, and it holds
    (folder / SIGNATURE).write_text(json.dumps(odd))
    verify_folder(folder, signing_keys.public)
    (folder / SIGNATURE).write_text(json.dumps(good))
    (folder / "benchmark_figures").mkdir()
    os.symlink("/etc/hostname", folder / "benchmark_figures" / "x.png")
    with pytest.raises(SignatureError, match=r"^benchmark_figures/x.png is a symbolic link"):
        verify_folder(folder, signing_keys.public)
    assert _reference(folder, signing_keys.public).returncode != 0
    report = (folder / "export_report.md").read_bytes()
    refused = _run("-m", "export.sign", str(folder), "--key", str(signing_keys.private))
    assert refused.returncode == 2 and "is a symbolic link" in refused.stderr, refused.stderr
    assert (folder / "export_report.md").read_bytes() == report and (folder / SIGNATURE).read_text() == json.dumps(good)
    shutil.rmtree(folder / "benchmark_figures")
    os.mkfifo(folder / "pipe")
    with pytest.raises(SignatureError, match=r"^pipe is not a plain file"):
        verify_folder(folder, signing_keys.public)
    (folder / "pipe").unlink()
    verify_folder(folder, signing_keys.public)
    missing = _run("-m", "export.sign", "--verify", str(tmp_path / "absent"), "--trust", str(signing_keys.public))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr, missing.stderr


def test_a_failed_signature_keeps_the_earlier_export_and_what_it_carried(tmp_path: Path) -> None:
    """staged_folder's before_swap (where export.all signs) failing: the earlier folder stays as it was, with
    the history and the user's file it would have carried into the new one."""
    from core.errors import UserError
    from core.io import staged_folder

    out = tmp_path / "dist"
    out.mkdir()
    for name, text in (("old.onnx", "old"), ("benchmark_history.jsonl", "{}\n"), ("notes.txt", "mine")):
        (out / name).write_text(text)

    def fail(folder: Path) -> None:
        assert sorted(p.name for p in folder.iterdir()) == ["benchmark_history.jsonl", "new.onnx", "notes.txt"]
        raise UserError("cannot sign")

    with (
        pytest.raises(UserError, match="cannot sign"),
        staged_folder(out, keep=lambda e: e.name != "old.onnx", before_swap=fail) as staging,
    ):
        (staging / "new.onnx").write_text("new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "old.onnx": "old",
        "benchmark_history.jsonl": "{}\n",
        "notes.txt": "mine",
    }
    assert not list(tmp_path.glob(".dist.staging-*"))
