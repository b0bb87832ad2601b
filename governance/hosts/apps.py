from django.apps import AppConfig


class HostsConfig(AppConfig):
    name = "governance.hosts"
    label = "hosts"
    verbose_name = "Compute hosts"
