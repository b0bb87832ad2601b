"""Compute host writes: a registration (the host agent's, with its host-scoped token; or a site admin's or
an operator's session) and heartbeats (the registering token only).

A registration is idempotent for the token that made it: the agent registers again each time it starts,
updating the inventory, labels and agent version. Another token may take a name over only once the
token that holds it was revoked or has expired (or when a person registered the host without a token);
otherwise the name is taken (409). Registrations are audited when they change something; heartbeats,
which arrive every few seconds from every host, are not (they carry no decision, only figures).

The inputs are checked here, in full, before anything is written: the API hands them over as they came.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.accounts.capabilities import Capability
from governance.accounts.models import ApiToken, Scope
from governance.accounts.permissions import can, can_anywhere, require_scope, token_team
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.core.errors import Conflict, NotFound, NotPermitted, ValidationFailed
from governance.core.jsoninput import json_problem
from governance.hosts.models import Host

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,58}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
MAX_LABELS = 32
MAX_GPUS = 64
MAX_BYTES = 2**62  # no machine has more memory; keeps every figure within a bigint and a float
AGENT_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,39}$")

NAME_RULE = "1 to 60 lowercase letters, digits and hyphens, starting and ending with a letter or digit"
LABEL_RULE = (
    "at most 32 labels; a key is 1 to 63 lowercase letters, digits, dots, underscores and hyphens, a value 1 to 63 "
    "letters, digits, dots, underscores and hyphens, each starting and ending with a letter or digit"
)

# The inventory's shape: key -> (JSON types accepted, required); each GPU's likewise.
_TEXT, _INT, _NULL = (str,), (int,), (type(None),)
INVENTORY_KEYS: dict[str, tuple[tuple[type, ...], bool, int]] = {
    # key: (types, required, longest text or largest number)
    "hostname": (_TEXT, False, 255),
    "platform": (_TEXT, False, 255),
    "python": (_TEXT, False, 40),
    "cpu_model": (_TEXT, False, 200),
    "cpu_cores": (_INT, True, 65536),
    "memory_total_bytes": (_INT + _NULL, False, MAX_BYTES),
    "gpus": ((list,), True, MAX_GPUS),
    "gpu_note": (_TEXT + _NULL, False, 300),
}
GPU_KEYS: dict[str, tuple[tuple[type, ...], bool, int]] = {
    "index": (_INT, True, 1023),
    "name": (_TEXT, True, 200),
    "uuid": (_TEXT, False, 100),
    "memory_total_bytes": (_INT + _NULL, False, MAX_BYTES),
    "driver_version": (_TEXT + _NULL, False, 50),
    "cuda_version": (_TEXT + _NULL, False, 20),
}
GPU_STATS_KEYS: dict[str, tuple[tuple[type, ...], bool, int]] = {
    "index": (_INT, True, 1023),
    "memory_used_bytes": (_INT + _NULL, False, MAX_BYTES),
    "utilization_percent": ((int, float, type(None)), False, 100),
}


# --- who may -----------------------------------------------------------------------------------


def _holds_host_register(actor) -> bool:
    """An operator or admin somewhere (in the token's team, for a team-restricted token), or a site admin."""
    team_id = token_team(actor)
    return (
        can(actor, Capability.HOST_REGISTER, team_id)
        if team_id is not None
        else can_anywhere(actor, Capability.HOST_REGISTER)
    )


def _require_registrar(actor) -> ApiToken | None:
    """The host-scoped token the request came with, or ``None`` for a person's session; refused unless
    its owner may register hosts."""
    token = getattr(actor, "_charter_token", None)
    if token is not None:
        require_scope(actor, Scope.HOST)
    if not _holds_host_register(actor):
        raise NotPermitted(
            "Only operators and admins of a team, and site administrators, may register compute hosts"
            + (" (this token's owner is neither any more)." if token is not None else "."),
            code="host_register_not_permitted",
        )
    return token


# --- inputs ------------------------------------------------------------------------------------


def _invalid(code: str, field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", code=code, fields={field: [message]})


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _invalid("invalid_name", "name", f"A host name is {NAME_RULE} (e.g. gpu-1).")
    return name


def clean_labels(labels: Any) -> dict[str, str]:
    """``labels`` as stored: an object of short strings, e.g. ``{"gpu": "h100", "env": "prod"}``."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise _invalid("invalid_labels", "labels", 'An object of text labels, e.g. {"gpu": "h100"}.')
    if len(labels) > MAX_LABELS:
        raise _invalid("invalid_labels", "labels", f"At most {MAX_LABELS} labels.")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise _invalid(
                "invalid_labels", "labels", f"The label key {str(key)[:80]!r} breaks the rule: {LABEL_RULE}."
            )
        if not isinstance(value, str) or not LABEL_VALUE_RE.match(value):
            raise _invalid("invalid_labels", "labels", f"The value of label {key!r} breaks the rule: {LABEL_RULE}.")
    return dict(sorted(labels.items()))


def _check_object(value: Any, shape: dict, *, code: str, field: str, where: str) -> dict:
    if not isinstance(value, dict):
        raise _invalid(code, field, f"{where} must be an object.")
    unknown = sorted(set(value) - set(shape))
    if unknown:
        raise _invalid(code, field, f"{where} has unknown keys: {', '.join(map(str, unknown))[:200]}. "
                                    f"Known: {', '.join(shape)}.")  # fmt: skip
    for key, (types, required, limit) in shape.items():
        if key not in value:
            if required:
                raise _invalid(code, field, f"{where} needs {key!r}.")
            continue
        item = value[key]
        if not isinstance(item, types) or (isinstance(item, bool) and bool not in types):
            names = " or ".join({"str": "text", "int": "a whole number", "float": "a number", "list": "a list",
                                 "NoneType": "null"}[t.__name__] for t in types)  # fmt: skip
            raise _invalid(code, field, f"{where}: {key!r} must be {names}.")
        if isinstance(item, str) and len(item) > limit:
            raise _invalid(code, field, f"{where}: {key!r} is longer than {limit} characters.")
        if isinstance(item, int | float) and not isinstance(item, bool) and not 0 <= item <= limit:
            raise _invalid(code, field, f"{where}: {key!r} must be from 0 to {limit}.")
        if isinstance(item, list) and len(item) > limit:
            raise _invalid(code, field, f"{where}: {key!r} has more than {limit} entries.")
    return value


def clean_inventory(inventory: Any) -> dict[str, Any]:
    """The agent's inventory: CPU model and cores, memory, and ``gpus`` (``[]`` with ``gpu_note`` saying
    why when the host has none, or NVML could not read them)."""
    code, field = "invalid_inventory", "inventory"
    if isinstance(inventory, dict | list) and (problem := json_problem(inventory)):
        raise _invalid(code, field, problem.message)
    _check_object(inventory, INVENTORY_KEYS, code=code, field=field, where="The inventory")
    if inventory["cpu_cores"] < 1:
        raise _invalid(code, field, "The inventory: 'cpu_cores' must be at least 1.")
    seen: set[int] = set()
    for position, gpu in enumerate(inventory["gpus"]):
        _check_object(gpu, GPU_KEYS, code=code, field=field, where=f"GPU {position}")
        if gpu["index"] in seen:
            raise _invalid(code, field, f"GPU {position}: index {gpu['index']} appears twice.")
        seen.add(gpu["index"])
    return inventory


def clean_gpu_stats(gpus: Any, *, inventory: dict) -> list[dict[str, Any]]:
    """A heartbeat's figures: per GPU of the host's inventory, memory used and utilisation (either may be
    null when NVML cannot read it)."""
    code, field = "invalid_gpu_stats", "gpus"
    if not isinstance(gpus, list):
        raise _invalid(code, field, "A list of {index, memory_used_bytes, utilization_percent}.")
    if len(gpus) > MAX_GPUS:
        raise _invalid(code, field, f"At most {MAX_GPUS} GPUs.")
    known = {g.get("index") for g in (inventory.get("gpus") or []) if isinstance(g, dict)}
    seen: set[int] = set()
    for position, stats in enumerate(gpus):
        _check_object(stats, GPU_STATS_KEYS, code=code, field=field, where=f"GPU {position}")
        index = stats["index"]
        if index not in known:
            raise _invalid(
                "unknown_gpu", field, f"GPU {position}: this host registered no GPU with index {index}; register "
                "it again (restart the agent) after a change of GPUs.",
            )  # fmt: skip
        if index in seen:
            raise _invalid(code, field, f"GPU {position}: index {index} appears twice.")
        seen.add(index)
    return sorted(gpus, key=lambda s: s["index"])


def check_agent_version(agent_version: Any) -> str:
    if agent_version in (None, ""):
        return ""
    if not isinstance(agent_version, str) or not AGENT_VERSION_RE.match(agent_version):
        raise _invalid(
            "invalid_agent_version", "agent_version", "Up to 40 letters, digits, dots, pluses and hyphens (e.g. 1.0)."
        )
    return agent_version


# --- writes ------------------------------------------------------------------------------------


def _may_replace(host: Host, token: ApiToken | None) -> bool:
    """Whether ``token`` (``None``: a session) may register ``host`` again: its own token always; anyone who
    may register hosts once the host's token is gone, revoked or expired."""
    if token is not None and host.token_id == token.pk:
        return True
    return host.token is None or not host.token.is_active


@transaction.atomic
def host_register(
    *, actor, name: str, labels: Any = None, inventory: Any, agent_version: Any = ""
) -> tuple[Host, bool]:
    """Register the host named ``name``, or register it again; ``(host, created)``."""
    token = _require_registrar(actor)
    name = check_name(name)
    labels = clean_labels(labels)
    inventory = clean_inventory(inventory)
    agent_version = check_agent_version(agent_version)
    now = timezone.now()
    fields = dict(labels=labels, inventory=inventory, agent_version=agent_version, token=token,
                  registered_by=actor, updated_at=now, last_heartbeat_at=now)  # fmt: skip
    host = Host.objects.select_for_update(of=("self",)).select_related("token").filter(name=name).first()
    if host is None:
        try:
            with transaction.atomic():
                host = Host.objects.create(name=name, registered_at=now, last_gpu_stats=[], **fields)
        except IntegrityError:  # registered by another request meanwhile: that row decides
            host = Host.objects.select_for_update(of=("self",)).select_related("token").get(name=name)
        else:
            audit.record(action=AuditAction.HOST_REGISTER, obj=host, after=audit.snapshot(host), actor=actor)
            return host, True
    if not _may_replace(host, token):
        raise Conflict(
            f"A host named {name} is already registered with another API token. Choose another name, or revoke "
            "that token first.",
            code="host_name_taken",
        )
    before = audit.snapshot(host)
    took_over = host.token_id != (token.pk if token is not None else None)
    if took_over:
        # another machine (or a new token) now answers to this name: what it measured before is not this one's
        fields["last_gpu_stats"] = []
    for field, value in fields.items():
        setattr(host, field, value)
    host.save()
    after = audit.snapshot(host)
    if after != before:
        changes = {"reason": "the host's previous token was revoked, had expired or was none"} if took_over else {}
        audit.record(
            action=AuditAction.HOST_REREGISTER, obj=host, before=before, after=after, changes=changes, actor=actor
        )
    return host, False


def host_heartbeat(*, actor, host_id: int, gpus: Any) -> Host:
    """Record that the host is alive, with its GPUs' memory use and utilisation now (not audited)."""
    token = getattr(actor, "_charter_token", None)
    if token is None:
        raise NotPermitted(
            "Heartbeats come from the host agent, with the host-scoped API token that registered the host.",
            code="host_token_required",
        )
    require_scope(actor, Scope.HOST)
    if not _holds_host_register(actor):
        raise NotPermitted(
            "This token's owner may no longer register compute hosts (operators and admins only).",
            code="host_register_not_permitted",
        )
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        raise NotFound("No such host: register it first.", code="host_not_found")
    if host.token_id != token.pk:
        raise NotPermitted("Only the API token that registered this host may send its heartbeats.",
                           code="host_token_mismatch")  # fmt: skip
    stats = clean_gpu_stats(gpus, inventory=host.inventory)
    now = timezone.now()
    # conditional on the token: a registration that took the host over meanwhile wins
    if not Host.objects.filter(pk=host.pk, token_id=token.pk).update(last_heartbeat_at=now, last_gpu_stats=stats):
        raise NotPermitted("Only the API token that registered this host may send its heartbeats.",
                           code="host_token_mismatch")  # fmt: skip
    host.last_heartbeat_at, host.last_gpu_stats = now, stats
    return host
