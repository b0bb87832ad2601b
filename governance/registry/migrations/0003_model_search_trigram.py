"""Trigram indexes for model search on PostgreSQL: ``icontains`` over 10,000 models (and the
page count that repeats it) otherwise scans the table twice per search."""

import logging

from django.db import migrations, transaction

logger = logging.getLogger(__name__)

COLUMNS = ("name", "use_case", "description")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm", params=None)
    except Exception:  # pg_trgm is a trusted extension, but a locked-down role may still lack CREATE
        logger.warning("pg_trgm is unavailable: model search works without its indexes, only slower.")
        return
    for column in COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS model_{column}_trgm ON registry_registeredmodel "
            f"USING gin (UPPER({column}::text) gin_trgm_ops)",
            params=None,
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS model_{column}_trgm", params=None)


class Migration(migrations.Migration):
    dependencies = [("registry", "0002_model_name_index")]

    operations = [migrations.RunPython(create, drop)]
