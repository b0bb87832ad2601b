"""Signed checkpoints of the chain head, exported outside the database and read back by verification.

A checkpoint pins the chain: the hash of event #n depends on every event before it, so an exported,
signed (n, hash) proves the first n events as they were. The application's database role can add
checkpoint rows but not change or delete them (``roles``); someone with more rights (the tables'
owner, a DBA) can delete rows, truncate the tail and re-hash what is left, which is why the exported
files are what counts: every file in the checkpoint storage (``AUDIT_CHECKPOINT_DIR``, or S3 with
Object Lock) is read back, its signature checked with the Ed25519 public key, and held against the
log and against the rows. A file whose row is gone is reported too.

One file per checkpoint, ``checkpoint-<seq, 12 digits>.json``::

    {"format": "charter-audit-checkpoint/2", "seq": 42, "hash": "<hex>", "signed_at": "<UTC, µs>Z",
     "algorithm": "ed25519", "key_id": "<sha256 of the public key's DER>",
     "message": "charter-audit-checkpoint:v2|42|<hex>|<signed_at>", "signature": "<base64>"}

``message`` is there for ``openssl`` (README); verification rebuilds it from the fields. Files and
rows from before Ed25519 (HMAC-SHA256, no ``algorithm``) are still read and checked.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import transaction
from django.utils import timezone

from governance.audit import chain, signing
from governance.audit.models import GENESIS_HASH, AuditEvent, ChainHead, Checkpoint

FORMAT = "charter-audit-checkpoint/2"
FILE_NAME = re.compile(r"^checkpoint-(\d{12})(?:_[A-Za-z0-9]+)?\.json$")


def storage(location: Path | None = None) -> Storage:
    """Where checkpoints are exported: ``location`` when given, else the configured storage."""
    if location is not None:
        return FileSystemStorage(location=location)
    if "audit_checkpoints" in settings.STORAGES:
        return storages["audit_checkpoints"]
    return FileSystemStorage(location=settings.AUDIT_CHECKPOINT_DIR)


@dataclass(frozen=True)
class Signed:
    """One signed statement about the chain head, from a row or from an exported file."""

    seq: int
    hash: str
    signed_at: str
    algorithm: str
    key_id: str
    signature: str
    where: str
    from_file: bool

    @classmethod
    def of_row(cls, cp: Checkpoint) -> Signed:
        return cls(
            cp.seq, cp.hash, chain.format_ts(cp.created_at), cp.algorithm, cp.key_id, cp.signature,
            f"checkpoint row for #{cp.seq}", False,
        )  # fmt: skip

    @classmethod
    def of_file(cls, name: str, data: dict) -> Signed:
        algorithm = data.get("algorithm", signing.HMAC_SHA256)  # files from before Ed25519 name none
        signed_at = data["signed_at"] if algorithm == signing.ED25519 else str(data.get("created_at", ""))
        values = (int(data["seq"]), data["hash"], signed_at, algorithm, data.get("key_id", ""), data["signature"])
        if not all(isinstance(v, str) for v in values[1:]):
            raise ValueError("a field is not text")
        return cls(*values, f"checkpoint file {name}", True)

    def message(self) -> bytes:
        return signing.message(seq=self.seq, digest=self.hash, signed_at=self.signed_at)


def document(cp: Checkpoint) -> dict:
    signed = Signed.of_row(cp)
    return {
        "format": FORMAT,
        "seq": cp.seq,
        "hash": cp.hash,
        "signed_at": signed.signed_at,
        "algorithm": cp.algorithm,
        "key_id": cp.key_id,
        "message": signed.message().decode(),
        "signature": cp.signature,
    }


def create(*, location: Path | None = None) -> Checkpoint:
    """Sign the current head and export it. Idempotent: a head already signed is exported again
    only if its file is missing, not signed twice."""
    key = signing.private_key()
    key_id = signing.key_id(key.public_key())
    target = storage(location)
    with transaction.atomic():
        head, _ = ChainHead.objects.get_or_create(id=1)
        cp = (
            Checkpoint.objects.filter(seq=head.seq, hash=head.hash, algorithm=signing.ED25519, key_id=key_id)
            .order_by("-id")
            .first()
        )
        if cp is None:
            signed_at = timezone.now()
            text = signing.message(seq=head.seq, digest=head.hash, signed_at=chain.format_ts(signed_at))
            cp = Checkpoint.objects.create(
                created_at=signed_at, seq=head.seq, hash=head.hash, algorithm=signing.ED25519, key_id=key_id,
                signature=signing.sign(key, text),
            )  # fmt: skip
        # Inside the transaction: if the export fails, no row claims a checkpoint that is nowhere else.
        export(cp, target)
    return cp


def export(cp: Checkpoint, target: Storage) -> str:
    name = f"checkpoint-{cp.seq:012d}.json"
    body = (json.dumps(document(cp), indent=2) + "\n").encode()
    if target.exists(name):
        with target.open(name, "rb") as existing:
            if existing.read() == body:
                return name
    return target.save(name, ContentFile(body))  # another checkpoint of this seq: a name of its own


def _read_exported(target: Storage) -> tuple[list[Signed], list[tuple[int, str]]]:
    try:
        _, names = target.listdir("")
    except FileNotFoundError:
        return [], []
    found, unreadable = [], []
    for name in sorted(names):
        match = FILE_NAME.match(name)
        if match is None:
            continue
        try:
            with target.open(name, "rb") as f:
                found.append(Signed.of_file(name, json.loads(f.read())))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            unreadable.append((int(match[1]), f"checkpoint file {name} cannot be read as a checkpoint"))
    return found, unreadable


def _signature_problem(signed: Signed, public_key, key_id: str) -> str | None:
    if signed.algorithm == signing.ED25519:
        if signed.key_id != key_id:
            return f"{signed.where} is signed by another key ({signed.key_id[:16]}…, not {key_id[:16]}…)"
        if not signing.verify(public_key, signed.message(), signed.signature):
            return f"{signed.where} has an invalid signature"
        return None
    if signed.algorithm == signing.HMAC_SHA256:
        if not hmac.compare_digest(signed.signature, signing.legacy_hmac(signed.seq, signed.hash)):
            return f"{signed.where} has an invalid signature"
        return None
    return f"{signed.where} uses an unknown algorithm {signed.algorithm!r}"


@dataclass(frozen=True)
class Report:
    checked: int  # signed checkpoints that checked out (a row and its file count once)
    problem: tuple[int, str] | None  # the first bad event's seq, and why


def check(*, last_seq: int, location: Path | None = None) -> Report:
    """Every checkpoint, exported or in the table, against the log; the earliest problem is named."""
    public_key = signing.public_key()
    key_id = signing.key_id(public_key)
    rows = [Signed.of_row(cp) for cp in Checkpoint.objects.order_by("seq", "id")]
    files, problems = _read_exported(storage(location))
    # (seq, rank, where, reason). The earliest bad event is named first; at one seq a removed tail or a
    # changed event says most. Deleted rows (rank 9) are named only when every event checks out.
    found: list[tuple[int, int, str, str]] = [(seq, 4, "", why) for seq, why in problems]
    valid = []
    for signed in files + rows:
        bad = _signature_problem(signed, public_key, key_id)
        if bad:
            found.append((signed.seq, 2, signed.where, bad))
        else:
            valid.append(signed)
    in_table = {(s.seq, s.hash, s.signature) for s in rows}
    for signed in valid:
        if signed.from_file and (signed.seq, signed.hash, signed.signature) not in in_table:
            found.append(
                (signed.seq, 9, signed.where,
                 f"{signed.where} (#{signed.seq}) has no row in the database: checkpoint rows were deleted")
            )  # fmt: skip
    pinned = {s.seq for s in valid if 0 < s.seq <= last_seq}
    actual = dict(AuditEvent.objects.filter(seq__in=pinned).values_list("seq", "hash")) if pinned else {}
    actual[0] = GENESIS_HASH  # a checkpoint of the empty chain

    def matches(signed: Signed) -> bool:
        return actual.get(signed.seq) == signed.hash

    matching = sorted(s.seq for s in valid if s.seq <= last_seq and matches(s))
    for signed in valid:
        if signed.seq > last_seq:
            found.append(
                (last_seq + 1, 0, signed.where,
                 f"the log ends at #{last_seq} but the signed {signed.where} covers #{signed.seq}: the tail was removed")
            )  # fmt: skip
        elif not matches(signed):
            reason = f"event #{signed.seq} differs from the signed {signed.where}"
            earlier = [seq for seq in matching if seq < signed.seq]
            if earlier:
                reason += f" (events up to #{earlier[-1]} still match a signed checkpoint)"
            found.append((signed.seq, 1, signed.where, reason))
    checked = len({(s.seq, s.hash, s.signature) for s in valid})
    if not found:
        return Report(checked, None)
    seq, _, _, reason = min(found, key=lambda f: (f[1] == 9, f[0], f[1], not f[2].startswith("checkpoint file"), f[2]))
    return Report(checked, (seq, reason))


def check_file(path: Path, *, last_seq: int) -> Report:
    """One checkpoint file given by hand (a copy kept apart from Charter, the ``checkpoint`` of an
    export's trailer) against the log: intact up to its ``seq``, a tail removed (the log ends before
    it), or rewritten (the event at its ``seq`` has another hash). ``ValueError`` when the file is no
    checkpoint."""
    path = Path(path)
    try:
        signed = Signed.of_file(path.name, json.loads(path.read_bytes()))
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a checkpoint (a JSON object with seq, hash, signed_at, signature)") from exc
    public_key = signing.public_key()
    bad = _signature_problem(signed, public_key, signing.key_id(public_key))
    if bad:
        return Report(0, (signed.seq, bad))
    if signed.seq > last_seq:
        return Report(
            0, (last_seq + 1, f"the log ends at #{last_seq} but the signed {signed.where} covers #{signed.seq}: "
                              "the tail was removed"),
        )  # fmt: skip
    actual = (
        GENESIS_HASH
        if signed.seq == 0
        else AuditEvent.objects.filter(seq=signed.seq).values_list("hash", flat=True).first()
    )
    if actual != signed.hash:
        return Report(
            0, (signed.seq, f"event #{signed.seq} differs from the signed {signed.where}: the tail was rewritten")
        )
    return Report(1, None)
