from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    AUTHOR = "author", "Author"
    REVIEWER = "reviewer", "Reviewer"
    APPROVER = "approver", "Approver"
    OPERATOR = "operator", "Operator"
    AUDITOR = "auditor", "Auditor"
    ADMIN = "admin", "Admin"


class Scope(models.TextChoices):
    READ = "read", "Read what the owner can see"
    WRITE = "write", "Register and edit models, versions and cards"
    TRANSITION = "transition", "Move versions through the lifecycle"
    ADMIN = "admin", "Manage teams, memberships and tokens"
    DEPLOY = "deploy", "Deploy, canary, promote, roll back and retire versions"
    # a host agent's own token: it may carry no other scope and reaches nothing but its host's calls
    HOST = "host", "Register this machine as a compute host and send its heartbeats"


class Team(models.Model):
    AUDIT_FIELDS = ["id", "name", "slug", "description"]

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("team-detail", args=[self.slug])

    @property
    def audit_team_id(self):
        return self.pk


class Membership(models.Model):
    """One role of one user in one team; a person with two roles has two memberships."""

    AUDIT_FIELDS = ["id", "user", "team", "role"]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team", "role"], name="membership_unique_role")]
        ordering = ["team__name", "role"]

    def __str__(self):
        return f"{self.user} is {self.role} in {self.team}"

    @property
    def audit_team_id(self):
        return self.team_id


class ApiToken(models.Model):
    """A scoped token for CI. Only ``prefix`` and the sha256 of the whole token are stored.

    A token created by another token (``parent``) is no stronger than it: no scope or team it
    lacks, no later expiry, and it is revoked with it.
    """

    AUDIT_FIELDS = ["id", "name", "user", "team", "parent", "prefix", "scopes", "expires_at", "revoked_at"]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children",
        help_text="The API token that created this one; empty when a person created it.",
    )  # fmt: skip
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def audit_team_id(self):
        return self.team_id

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()
