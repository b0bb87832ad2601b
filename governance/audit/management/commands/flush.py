"""``flush`` connects as the schema's owner (DATABASE_OWNER_URL) when one is configured.

Emptying tables is ``TRUNCATE``, which the application's role may not run on the audit log
(governance/audit/roles.py); the test harness flushes after every transactional test.
"""

from django.core.management.commands import flush

from governance.audit import roles


class Command(flush.Command):
    def handle(self, **options):
        with roles.as_owner(options["database"]):
            return super().handle(**options)
