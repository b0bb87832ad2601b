from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from governance.audit import services


class Command(BaseCommand):
    help = "Sign the current head of the audit chain and export it, so a removed tail is detectable."

    def add_arguments(self, parser):
        parser.add_argument("--export-dir", default=str(settings.AUDIT_CHECKPOINT_DIR))

    def handle(self, *args, export_dir, **options):
        cp = services.checkpoint_create(export_dir=Path(export_dir))
        self.stdout.write(f"Checkpoint #{cp.seq} {cp.hash} signed and exported to {export_dir}.")
