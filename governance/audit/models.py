from django.conf import settings
from django.db import models
from django.utils import timezone

GENESIS_HASH = "0" * 64


class AuditEvent(models.Model):
    """One governed write. Append-only: PostgreSQL refuses UPDATE and DELETE on this table.

    ``hash`` is sha256 over the event's canonical line (see ``chain.canonical_line``), which
    starts with ``prev_hash``; so each row can be checked against its predecessor alone and
    the whole chain can be verified in one set-based pass.
    """

    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,  # audit_actor_idx (actor, -seq) serves every lookup by actor
    )
    actor_label = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=16)
    request_id = models.CharField(max_length=64)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=200)
    team_id = models.BigIntegerField(null=True, blank=True)
    changes = models.TextField(help_text="Canonical JSON: before/after snapshots and details, exactly as hashed.")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "-seq"], name="audit_object_idx"),
            models.Index(fields=["team_id", "-seq"], name="audit_team_idx"),
            models.Index(fields=["actor", "-seq"], name="audit_actor_idx"),
            models.Index(fields=["action", "-seq"], name="audit_action_idx"),
            models.Index(fields=["request_id"], name="audit_request_idx"),
        ]

    def __str__(self):
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"


class ChainHead(models.Model):
    """The newest link of the chain. Its row lock is what orders concurrent appends."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)
    prev_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self):
        return f"head #{self.seq} {self.hash[:12]}"


class Checkpoint(models.Model):
    """A signed copy of the chain head, so a truncated or rewritten tail shows.

    What verification trusts is the exported copy, outside the database (``services.checkpoint_create``);
    this row is a copy the application may add to but never change or delete (``roles``).
    """

    created_at = models.DateTimeField(default=timezone.now)  # signed with seq and hash: set before signing
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    algorithm = models.CharField(max_length=16)  # signing.ED25519; signing.HMAC_SHA256 before Ed25519
    key_id = models.CharField(max_length=64, blank=True)  # sha256 of the Ed25519 public key
    signature = models.CharField(max_length=128)

    class Meta:
        ordering = ["-seq"]

    def __str__(self):
        return f"checkpoint #{self.seq} {self.hash[:12]}"
