"""Checkpoints signed with Ed25519. Rows written before keep their HMAC-SHA256 signature and are
marked as such, so they stay verifiable (services.verify reads both)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_trim_indexes")]

    operations = [
        migrations.AddField(
            model_name="checkpoint",
            name="algorithm",
            field=models.CharField(default="hmac-sha256", max_length=16),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="checkpoint",
            name="key_id",
            field=models.CharField(blank=True, default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="checkpoint",
            name="signature",
            field=models.CharField(max_length=128),
        ),
        migrations.AlterField(
            model_name="checkpoint",
            name="created_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
    ]
