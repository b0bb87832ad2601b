"""``migrate`` connects as the schema's owner (DATABASE_OWNER_URL) when one is configured.

The application's own role may not create or alter tables (governance/audit/roles.py), so Django's
command runs unchanged, only with the owner's credentials on the migrated alias for its duration:
every migration, data migration and post_migrate handler (the grants among them) runs as the owner.
"""

from django.core.management.commands import migrate

from governance.audit import roles


class Command(migrate.Command):
    def handle(self, *args, **options):
        with roles.as_owner(options["database"]):
            return super().handle(*args, **options)
