from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from governance.audit import services, signing


class Command(BaseCommand):
    help = (
        "Sign the current head of the audit chain with the Ed25519 key and export it outside the database, "
        "so that a removed or rewritten tail is detectable."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--export-dir",
            default=None,
            help="Export here instead of the configured checkpoint storage (AUDIT_CHECKPOINT_DIR or S3); "
            "audit_verify reads the configured one unless given --checkpoint-dir.",
        )

    def handle(self, *args, export_dir=None, **options):
        cp = services.checkpoint_create(export_dir=Path(export_dir) if export_dir else None)
        where = export_dir or (
            "S3" if settings.AUDIT_CHECKPOINT_STORAGE == "s3" else str(settings.AUDIT_CHECKPOINT_DIR)
        )
        self.stdout.write(
            f"Checkpoint #{cp.seq} {cp.hash} signed ({cp.algorithm}, key {signing.key_id()[:16]}) "
            f"and exported to {where}."
        )
