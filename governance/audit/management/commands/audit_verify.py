import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from governance.audit import services


class Command(BaseCommand):
    help = (
        "Verify the whole audit hash chain, and its tail against every signed checkpoint exported outside "
        "the database; name the first broken event."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--in-python",
            action="store_true",
            help="Recompute every hash in this process instead of inside PostgreSQL.",
        )
        parser.add_argument(
            "--checkpoint",
            default=None,
            metavar="FILE",
            help="Hold the log against this one signed checkpoint file (a copy kept apart, or the checkpoint of an "
            "export's trailer) instead of the configured storage: says whether the chain is intact up to it, "
            "its tail removed, or rewritten.",
        )
        parser.add_argument(
            "--checkpoint-dir",
            default=None,
            help="Read the exported checkpoints from this directory (a copy, say) instead of the configured storage.",
        )

    def handle(self, *args, in_python=False, checkpoint_dir=None, checkpoint=None, **options):
        if checkpoint and checkpoint_dir:
            raise CommandError("Give --checkpoint or --checkpoint-dir, not both.")
        started = time.perf_counter()
        try:
            result = services.verify(
                in_database=False if in_python else None,
                checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
                checkpoint_file=Path(checkpoint) if checkpoint else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        elapsed = time.perf_counter() - started
        if result.ok and checkpoint:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Audit chain intact: {result.events_checked} events, head #{result.head_seq}; the signed "
                    f"checkpoint {checkpoint} agrees with the log ({elapsed:.2f}s)."
                )
            )
            return
        if result.ok:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Audit chain intact: {result.events_checked} events, head #{result.head_seq}, "
                    f"signed checkpoints that agree: {result.checkpoints_checked} ({elapsed:.2f}s)."
                )
            )
            return
        where = f"event #{result.first_broken_seq}"
        if result.first_broken_id is not None:
            where += f" (id {result.first_broken_id})"
        raise CommandError(f"Audit chain BROKEN at {where}: {result.reason}.")
