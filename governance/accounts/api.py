from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.accounts import selectors, services
from governance.accounts.models import ApiToken, Membership, Role, Scope, Team
from governance.core.api import described, errors, validated
from governance.core.errors import NotFound

User = get_user_model()


class TeamOut(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "slug", "description", "created_at"]


_TeamName = described(serializers.CharField, {"type": "string", "pattern": services.TEAM_NAME_PATTERN})


class TeamIn(serializers.Serializer):
    name = _TeamName(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class TeamPatchIn(serializers.Serializer):
    name = _TeamName(max_length=100, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TeamOut
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]

    def get_queryset(self):
        return selectors.team_list(user=self.request.user)

    @extend_schema(
        summary="Create a team (site administrators)", request=TeamIn, responses={201: TeamOut, **errors(400, 403, 409)}
    )
    def create(self, request):
        team = services.team_create(actor=request.user, **validated(TeamIn, request.data))
        return Response(TeamOut(team).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Edit a team (team admins)", request=TeamPatchIn, responses={200: TeamOut, **errors(400, 403, 404, 409)}
    )
    def partial_update(self, request, pk=None):
        team = services.team_update(actor=request.user, team=self.get_object(), **validated(TeamPatchIn, request.data))
        return Response(TeamOut(team).data)


class MembershipOut(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    team_name = serializers.CharField(source="team.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "team", "team_name", "user", "username", "role", "created_at"]


class MembershipIn(serializers.Serializer):
    team = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)


class MembershipViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = MembershipOut
    filterset_fields = ["team", "role"]

    def get_queryset(self):
        return selectors.membership_list(user=self.request.user)

    @extend_schema(
        summary="Give a user a role in a team (team admins)",
        request=MembershipIn,
        responses={201: MembershipOut, **errors(400, 403, 404, 409)},
    )
    def create(self, request):
        data = validated(MembershipIn, request.data)
        team = selectors.team_list(user=request.user).filter(pk=data["team"]).first()
        if team is None:
            raise NotFound("No such team, or you are not a member of it.", code="team_not_found")
        user = User.objects.filter(username=data["username"], is_active=True).first()
        if user is None:
            raise NotFound(f"No active user named '{data['username']}'.", code="user_not_found")
        membership = services.membership_add(actor=request.user, team=team, user=user, role=data["role"])
        return Response(MembershipOut(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Remove a role from a user (team admins)", responses={204: None, **errors(403, 404)})
    def destroy(self, request, pk=None):
        services.membership_remove(actor=request.user, membership=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenOut(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = [
            "id", "name", "prefix", "team", "parent", "scopes", "created_at", "expires_at", "revoked_at",
            "last_used_at",
        ]  # fmt: skip


class TokenIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices), allow_empty=False, min_length=1
    )
    team = serializers.IntegerField(required=False, allow_null=True, default=None)
    expires_in_days = serializers.IntegerField(min_value=1, max_value=services.MAX_TOKEN_DAYS, default=90)


TokenCreatedOut = inline_serializer(
    name="TokenCreated",
    fields={"token": TokenOut(), "secret": serializers.CharField(help_text="Shown once; store it in your CI secrets.")},
)


class TokenViewSet(viewsets.ReadOnlyModelViewSet):
    """Your own API tokens. The secret is returned once, at creation; only its hash is stored."""

    serializer_class = TokenOut

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return ApiToken.objects.none()
        return selectors.token_list(user=self.request.user)

    @extend_schema(
        summary="Create an API token",
        description="Created with an API token, the new token is its child (`parent`): it gets no scope or team "
        "the parent lacks, cannot outlive it (403 `token_outlives_parent`, naming the parent's expiry) and is "
        "revoked with it.",
        request=TokenIn,
        responses={201: TokenCreatedOut, **errors(400, 403)},
    )
    def create(self, request):
        data = validated(TokenIn, request.data)
        team = None
        if data["team"] is not None:
            team = selectors.team_list(user=request.user).filter(pk=data["team"]).first()
            if team is None:
                raise NotFound("No such team, or you are not a member of it.", code="team_not_found")
        token, secret = services.token_create(
            actor=request.user,
            name=data["name"],
            scopes=data["scopes"],
            team=team,
            expires_in_days=data["expires_in_days"],
        )
        return Response({"token": TokenOut(token).data, "secret": secret}, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Revoke a token, and every token it created",
        request=None,
        responses={200: TokenOut, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = services.token_revoke(actor=request.user, token=self.get_object())
        return Response(TokenOut(token).data)
