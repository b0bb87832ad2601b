"""Staging and production from the start, each on a local MLServer (the run command starts them).

Every default policy names these two environments, and a policy may only name environments that
exist. Site administrators re-point them at other backends (``config.local`` names the run
command's server; without it, ``url`` and ``config`` say where the backend is).
"""

from django.db import migrations

DEFAULTS = [
    # name, position, description, default HTTP port of its local MLServer
    ("staging", 10, "Pre-production: new versions go live here first.", 8181),
    ("production", 20, "Serves real traffic.", 8182),
]


def create(apps, schema_editor):
    Backend = apps.get_model("serving", "ServingBackend")
    Environment = apps.get_model("serving", "Environment")
    for name, position, description, port in DEFAULTS:
        backend, _ = Backend.objects.get_or_create(
            name=f"local-{name}",
            defaults={"kind": "mlserver", "url": f"http://127.0.0.1:{port}", "config": {"local": name}},
        )
        Environment.objects.get_or_create(
            name=name, defaults={"backend": backend, "position": position, "description": description}
        )


class Migration(migrations.Migration):
    dependencies = [("serving", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
