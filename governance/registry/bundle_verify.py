#!/usr/bin/env python3
"""Check a Charter evidence bundle without Charter: ``python3 verify.py bundle.zip [--key-id HEX]`` (Python 3.7+).

Standard library only (no ``cryptography``): the Ed25519 signatures are checked by the short pure
Python verification of RFC 8032 below. What it checks:

1. ``manifest.sig``: Charter's Ed25519 signature over the sha256 of ``manifest.json``;
2. every file against its sha256 in the manifest (a file missing, added or changed is named);
3. each audit event's hash, recomputed from its canonical line exactly as Charter computes it
   (``prev_hash|seq|created_at|actor_id|actor_label|source|request_id|action|object_type|object_id|team_id|changes``),
   and the prev-hash link between events whose sequence numbers follow each other;
4. the signed checkpoint in ``audit/checkpoint.json``: its signature, its key, and that it covers
   the last event (same sequence number, same hash);
5. each evaluation's result digest against its JSON and against the digest its audit event recorded,
   and each review's evidence digest against the evidence it froze (where the manifest says Charter
   could recompute it when it built the bundle).

The public key travels in the bundle (``public_key.pem``): it proves nothing unless its key id is the
one Charter publishes (``GET /api/v1/audit/public-key/``). Pass that id with ``--key-id``.

Exit status 0 when everything holds (a summary is printed), 1 when anything does not (each problem is
printed, naming the file or the event), 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import zipfile
from pathlib import Path

BUNDLE_FORMAT = "charter-evidence-bundle/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
PUBLIC_KEY, EVENTS, CHECKPOINT = "public_key.pem", "audit/events.json", "audit/checkpoint.json"
BUNDLE_MESSAGE_PREFIX = "charter-evidence-bundle:v1"
CHECKPOINT_MESSAGE_PREFIX = "charter-audit-checkpoint:v2"
GENESIS_HASH = "0" * 64
# An Ed25519 SubjectPublicKeyInfo is this DER prefix followed by the 32 bytes of the key.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

# --- Ed25519 verification (RFC 8032, section 5.1.7), on the twisted Edwards curve
# -x^2 + y^2 = 1 + d x^2 y^2 over GF(2^255 - 19), points in extended coordinates (X, Y, Z, T),
# x = X/Z, y = Y/Z, x*y = T/Z.

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point
D = -121665 * pow(121666, P - 2, P) % P
SQRT_MINUS_ONE = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)


def _add(a: tuple, b: tuple) -> tuple:
    """The unified addition law (RFC 8032, 5.1.4); it also doubles."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    k = (y1 - x1) * (y2 - x2) % P
    m = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    w = 2 * z1 * z2 % P
    e, f, g, h = m - k, w - c, w + c, m + k
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _times(scalar: int, point: tuple) -> tuple:
    result = IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _same(a: tuple, b: tuple) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _x_from_y(y: int, sign: int) -> int | None:
    """x with x^2 = (y^2 - 1) / (d y^2 + 1) and the given parity (RFC 8032, 5.1.3), or None."""
    if y >= P:
        return None
    square = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if square == 0:
        return None if sign else 0
    x = pow(square, (P + 3) // 8, P)
    if (x * x - square) % P:
        x = x * SQRT_MINUS_ONE % P
    if (x * x - square) % P:
        return None
    return P - x if (x & 1) != sign else x


def _point(encoded: bytes) -> tuple | None:
    if len(encoded) != 32:
        return None
    y = int.from_bytes(encoded, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _x_from_y(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


_BASE_Y = 4 * pow(5, P - 2, P) % P
_BASE_X = _x_from_y(_BASE_Y, 0)
BASE = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % P)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the Ed25519 signature of ``message`` under ``public_key``:
    [S]B = R + [k]A with k = SHA-512(R || A || message) mod L."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = _point(public_key), _point(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % L
    return _same(_times(s, BASE), _add(r, _times(k, a)))


# --- reading the bundle


class Bundle:
    """The files of a bundle, from a zip or from the folder it was unzipped into."""

    def __init__(self, path: Path):
        self.files: dict[str, bytes] = {}
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file():
                    self.files[file.relative_to(path).as_posix()] = file.read_bytes()
        else:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        self.files[info.filename] = archive.read(info)
        self.from_folder = path.is_dir()


def _json(data: bytes):
    return json.loads(data.decode("utf-8"))


def canonical_json(value) -> str:
    """Charter's canonical JSON (governance/audit/chain.py): what its digests are computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_line(event: dict) -> str:
    fields = [
        event["prev_hash"], str(event["seq"]), event["created_at"],
        "" if event["actor_id"] is None else str(event["actor_id"]), event["actor_label"], event["source"],
        event["request_id"], event["action"], event["object_type"], event["object_id"],
        "" if event["team_id"] is None else str(event["team_id"]), event["changes"],
    ]  # fmt: skip
    return "|".join(fields)


def event_hash(event: dict) -> str:
    return hashlib.sha256(canonical_line(event).encode("utf-8")).hexdigest()


def public_key_from_pem(text: str) -> tuple[bytes, str]:
    """(the raw 32-byte key, its key id: the sha256 of its DER) from an Ed25519 public key PEM."""
    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    der = base64.b64decode(body, validate=True)
    if len(der) != 44 or not der.startswith(ED25519_SPKI_PREFIX):
        raise ValueError("not an Ed25519 public key")
    return der[len(ED25519_SPKI_PREFIX) :], hashlib.sha256(der).hexdigest()


class Verifier:
    def __init__(self, bundle: Bundle, pinned_key_id: str | None):
        self.bundle = bundle
        self.pinned_key_id = pinned_key_id.lower() if pinned_key_id else None
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.done: list[str] = []
        self.key: bytes | None = None
        self.key_id = ""
        self.manifest: dict = {}

    def fail(self, where: str, why: str) -> None:
        self.problems.append(f"{where}: {why}")

    def run(self) -> bool:
        self.check_key()
        self.check_manifest()
        self.check_files()
        events = self.check_events()
        self.check_checkpoint(events)
        self.check_evaluations(events)
        self.check_reviews()
        return not self.problems

    # 1. the key and the manifest's signature

    def check_key(self) -> None:
        pem = self.bundle.files.get(PUBLIC_KEY)
        if pem is None:
            self.fail(PUBLIC_KEY, "missing: the signatures cannot be checked")
            return
        try:
            self.key, self.key_id = public_key_from_pem(pem.decode("ascii"))
        except (ValueError, UnicodeDecodeError) as exc:
            self.fail(PUBLIC_KEY, f"is not a readable Ed25519 public key ({exc})")
            return
        if self.pinned_key_id is not None and self.key_id != self.pinned_key_id:
            self.fail(PUBLIC_KEY, f"has key id {self.key_id}, not the pinned {self.pinned_key_id}")
        elif self.pinned_key_id is None:
            self.notes.append(
                f"The bundle is signed with key id {self.key_id}. It proves authorship only if this is the id "
                "Charter publishes (GET /api/v1/audit/public-key/): pass it with --key-id to have it checked."
            )

    def check_manifest(self) -> None:
        data = self.bundle.files.get(MANIFEST)
        if data is None:
            self.fail(MANIFEST, "missing")
            return
        actual = hashlib.sha256(data).hexdigest()
        signed = self.bundle.files.get(SIGNATURE)
        if signed is None:
            self.fail(SIGNATURE, "missing: nothing vouches for manifest.json")
        elif self.key is not None:
            try:
                sig = _json(signed)
                digest, signature = sig["manifest_sha256"], base64.b64decode(sig["signature"], validate=True)
                if not isinstance(digest, str):
                    raise TypeError("manifest_sha256 is not text")
            except (ValueError, KeyError, TypeError) as exc:
                self.fail(SIGNATURE, f"cannot be read ({exc})")
            else:
                message = f"{BUNDLE_MESSAGE_PREFIX}|{digest}"
                expected = {"algorithm": "ed25519", "key_id": self.key_id, "message": message}
                if set(sig) != {*expected, "manifest_sha256", "signature"}:
                    self.fail(SIGNATURE, "holds other fields than a bundle signature's")
                elif any(sig[field] != value for field, value in expected.items()):
                    wrong = ", ".join(field for field, value in expected.items() if sig[field] != value)
                    self.fail(SIGNATURE, f"was changed: its {wrong} does not match the signed manifest digest and key")
                elif not ed25519_verify(self.key, message.encode(), signature):
                    self.fail(SIGNATURE, "its Ed25519 signature does not verify with public_key.pem")
                elif digest != actual:
                    self.fail(MANIFEST, f"was changed: its sha256 is {actual}, the signed one {digest}")
                else:
                    self.done.append("manifest.json carries a valid Ed25519 signature")
        try:
            self.manifest = _json(data)
            if not isinstance(self.manifest, dict) or not isinstance(self.manifest.get("files"), dict):
                raise ValueError("no file list")
        except ValueError as exc:
            self.fail(MANIFEST, f"cannot be read ({exc})")
            self.manifest = {}
            return
        if self.manifest.get("format") != BUNDLE_FORMAT:
            self.fail(MANIFEST, f"is of format {self.manifest.get('format')!r}, not {BUNDLE_FORMAT}")

    # 2. every file

    def check_files(self) -> None:
        listed = self.manifest.get("files") or {}
        for name, entry in sorted(listed.items()):
            data = self.bundle.files.get(name)
            if data is None:
                self.fail(name, "listed in the manifest but missing from the bundle")
                continue
            expected = entry.get("sha256") if isinstance(entry, dict) else None
            if hashlib.sha256(data).hexdigest() != expected:
                self.fail(name, "was changed: its sha256 does not match the manifest")
            elif entry.get("size") != len(data):
                self.fail(name, "was changed: its size does not match the manifest")
        unlisted = sorted(set(self.bundle.files) - set(listed) - {MANIFEST, SIGNATURE})
        for name in unlisted:
            if self.bundle.from_folder:
                self.notes.append(f"{name} is in the folder but not in the bundle (not checked)")
            else:
                self.fail(name, "is in the bundle but not in the manifest")
        if listed:
            self.done.append(f"{len(listed)} files match their sha256 in the manifest")

    # 3. the audit events

    def check_events(self) -> list[dict]:
        data = self.bundle.files.get(EVENTS)
        if data is None:
            self.fail(EVENTS, "missing")
            return []
        try:
            events = _json(data)["events"]
            for event in events:
                canonical_line(event)  # every field is there
                if not isinstance(event["seq"], int) or not isinstance(event["hash"], str):
                    raise TypeError("seq or hash of the wrong type")
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(EVENTS, f"cannot be read ({type(exc).__name__}: {exc})")
            return []
        by_seq: dict[int, dict] = {}
        for event in events:
            name = _event_name(event)
            if event["seq"] in by_seq:
                self.fail(name, "appears twice")
            by_seq[event["seq"]] = event
            try:
                computed = event_hash(event)
            except (TypeError, AttributeError) as exc:
                self.fail(name, f"has a field of the wrong type ({exc})")
                continue
            if computed != event["hash"]:
                self.fail(name, f"was changed: its fields hash to {computed}, not to its recorded hash {event['hash']}")
        linked = 0
        for seq, event in sorted(by_seq.items()):
            before = by_seq.get(seq - 1)
            if seq == 1 and event["prev_hash"] != GENESIS_HASH:
                self.fail(
                    _event_name(event), "is the first event of the chain but does not start from the genesis hash"
                )
            if before is not None:
                linked += 1
                if event["prev_hash"] != before["hash"]:
                    self.fail(
                        _event_name(event), f"does not link to event #{seq - 1}: its prev_hash is not that event's hash"
                    )
        manifest_audit = self.manifest.get("audit") or {}
        if by_seq and manifest_audit.get("events") != len(by_seq):
            self.fail(EVENTS, f"holds {len(by_seq)} events; the manifest says {manifest_audit.get('events')}")
        if by_seq:
            self.done.append(
                f"{len(by_seq)} audit events (#{min(by_seq)} to #{max(by_seq)}) recompute to their hashes; "
                f"{linked} of them link to the event before them in the bundle"
            )
            gaps = max(by_seq) - min(by_seq) + 1 - len(by_seq)
            if gaps:
                self.notes.append(
                    f"{gaps} events between #{min(by_seq)} and #{max(by_seq)} are about other objects and are not in "
                    "the bundle; check the listed events' hashes against Charter's log or an audit export to link them."
                )
        return [by_seq[s] for s in sorted(by_seq)]

    # 4. the checkpoint

    def check_checkpoint(self, events: list[dict]) -> None:
        data = self.bundle.files.get(CHECKPOINT)
        if data is None:
            self.fail(CHECKPOINT, "missing")
            return
        try:
            cp = _json(data)
            seq, digest, signed_at = int(cp["seq"]), cp["hash"], cp["signed_at"]
            signature = base64.b64decode(cp["signature"], validate=True)
            if not isinstance(digest, str) or not isinstance(signed_at, str):
                raise TypeError("hash or signed_at is not text")
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(CHECKPOINT, f"cannot be read ({exc})")
            return
        message = f"{CHECKPOINT_MESSAGE_PREFIX}|{seq}|{digest}|{signed_at}"
        if cp.get("algorithm") != "ed25519":
            self.fail(CHECKPOINT, f"uses algorithm {cp.get('algorithm')!r}; this script checks ed25519")
        elif cp.get("message") not in (None, message):
            self.fail(CHECKPOINT, "its message does not match its seq, hash and signed_at")
        elif self.key is not None and cp.get("key_id") != self.key_id:
            self.fail(CHECKPOINT, "is signed by another key than public_key.pem")
        elif self.key is not None and not ed25519_verify(self.key, message.encode(), signature):
            self.fail(CHECKPOINT, f"checkpoint #{seq}: its Ed25519 signature does not verify")
        elif self.key is not None:
            self.done.append(f"checkpoint #{seq} (signed {signed_at}) carries a valid Ed25519 signature")
        if not events:
            return
        last = events[-1]
        if seq < last["seq"]:
            self.fail(CHECKPOINT, f"checkpoint #{seq} does not cover the last event, #{last['seq']}")
        elif seq == last["seq"]:
            if digest != last["hash"]:
                self.fail(CHECKPOINT, f"checkpoint #{seq} does not match {_event_name(last)}: the hashes differ")
            else:
                self.done.append(f"the checkpoint covers the last event, #{seq}: same sequence number, same hash")
        else:
            self.notes.append(
                f"checkpoint #{seq} is later than the last event (#{last['seq']}); that the events lead to it can be "
                "checked against Charter's log"
            )

    # 5. digests the evidence carries

    def check_evaluations(self, events: list[dict]) -> None:
        recorded: dict[str, str] = {}
        for event in events:
            if event["action"] == "evaluation.succeed":
                try:
                    recorded[event["object_id"]] = json.loads(event["changes"])["after"]["result_digest"]
                except (ValueError, KeyError, TypeError):
                    continue
        unchecked = set(self.manifest.get("not_recomputable") or [])
        checked = 0
        for name in sorted(self.bundle.files):
            if not (name.startswith("evaluations/") and name.endswith("/evaluation.json")):
                continue
            try:
                run = _json(self.bundle.files[name])
                stored = run["result_digest"]
                if run["status"] != "succeeded" or name in unchecked:
                    continue
                computed = hashlib.sha256(
                    canonical_json([run["kind"], run["artifact_sha256"], run["result"], run["figures"]]).encode()
                ).hexdigest()
            except (ValueError, KeyError, TypeError) as exc:
                self.fail(name, f"cannot be read ({exc})")
                continue
            checked += 1
            if computed != stored:
                self.fail(name, "its result and figures do not hash to its result_digest")
            if str(run.get("id")) in recorded and recorded[str(run["id"])] != stored:
                self.fail(
                    name, f"its result_digest is not the one audit event evaluation.succeed of run {run['id']} recorded"
                )
        if checked:
            self.done.append(f"{checked} evaluation results hash to their result_digest")

    def check_reviews(self) -> None:
        name = "approvals/requests.json"
        data = self.bundle.files.get(name)
        if data is None:
            return
        unchecked = set(self.manifest.get("not_recomputable") or [])
        try:
            requests = _json(data)["requests"]
            checked = 0
            for request in requests:
                if f"{name}#{request['id']}" in unchecked:
                    continue
                checked += 1
                if (
                    hashlib.sha256(canonical_json(request["evidence"]).encode()).hexdigest()
                    != request["evidence_digest"]
                ):
                    self.fail(
                        name, f"review #{request['id']}: its frozen evidence does not hash to its evidence_digest"
                    )
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(name, f"cannot be read ({exc})")
            return
        if checked:
            self.done.append(f"{checked} reviews' frozen evidence hashes to its evidence_digest")


def _event_name(event: dict) -> str:
    return (
        f"audit event #{event.get('seq')} ({event.get('action')} {event.get('object_type')}:{event.get('object_id')})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a Charter evidence bundle (a zip, or the folder it unzips to).")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--key-id", help="the key id Charter publishes; the bundle's key must be that one")
    args = parser.parse_args(argv)
    if not args.bundle.exists():
        parser.error(f"{args.bundle} does not exist")
    try:
        bundle = Bundle(args.bundle)
    except (zipfile.BadZipFile, OSError) as exc:
        print(f"FAIL {args.bundle}: cannot be read as a zip ({exc})")
        return 1
    verifier = Verifier(bundle, args.key_id)
    ok = verifier.run()
    described = verifier.manifest.get("version") or {}
    model = verifier.manifest.get("model") or {}
    print(f"Charter evidence bundle: {model.get('name', '?')} v{described.get('number', '?')} (version id "
          f"{described.get('id', '?')}), generated {verifier.manifest.get('generated_at', '?')}")  # fmt: skip
    for line in verifier.done:
        print(f"  ok    {line}")
    for line in verifier.notes:
        print(f"  note  {line}")
    for line in verifier.problems:
        print(f"  FAIL  {line}")
    print("VERIFIED: every check passed." if ok else f"NOT VERIFIED: {len(verifier.problems)} problem(s).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
