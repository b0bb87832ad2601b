"""Print the statistics of a training table as JSON, to register with a version (training_profile).

    .venv/bin/python manage.py profile_data data/train.csv > training-profile.json
    curl ... -F training_profile=@training-profile.json ... /api/v1/versions/

Only statistics leave the machine: per column its kind, type, missing share, numeric quantiles and
histogram, or category counts (capped). The rule of stored results applies (``workers.engines.privacy``):
a value fewer than ``--min-count`` rows hold (default: the EVALUATION_MIN_COUNT setting, else 5) is
counted, not named, and no exact minimum or maximum is written.
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Print the training-data profile (JSON) of a CSV or Parquet file."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--max-rows", type=int, default=5_000_000)
        parser.add_argument("--min-count", type=int, default=None, help="Rows a value needs to be named (k).")

    def handle(self, *args, path: str, max_rows: int, min_count: int | None = None, **options):
        from django.conf import settings

        from workers.engines import privacy
        from workers.engines.data import read_table
        from workers.engines.data_quality import profile
        from workers.engines.errors import EngineError

        if not Path(path).is_file():
            raise CommandError(f"No such file: {path}")
        try:
            frame = read_table(path, max_rows=max_rows)
        except EngineError as exc:
            raise CommandError(exc.message) from None
        k = privacy.min_count_setting(min_count if min_count is not None else settings.EVALUATION_MIN_COUNT)
        self.stdout.write(json.dumps(profile(frame, min_count=k), indent=1))
