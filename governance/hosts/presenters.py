"""What the host pages show of a host: its status badge, labels, a GPU summary and table (inventory and the
last heartbeat's figures side by side), and the inventory's facts in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.template.defaultfilters import filesizeformat

from governance.hosts import selectors
from governance.hosts.models import Host, HostStatus

# badge colours of the stage palette (static/css/charter.css): green, amber, grey
STATUS_CLASSES = {
    HostStatus.ONLINE: "stage-approved",
    HostStatus.STALE: "stage-in_review",
    HostStatus.OFFLINE: "stage-retired",
}


@dataclass(frozen=True)
class HostRow:
    host: Host
    status: HostStatus
    status_class: str
    labels: list[tuple[str, str]]
    gpu_summary: str
    gpu_note: str


def status(host: Host) -> HostStatus:
    annotated = getattr(host, "status", None)
    return HostStatus(annotated) if annotated is not None else selectors.status_of(host.last_heartbeat_at)


def row(host: Host) -> HostRow:
    now = status(host)
    inventory = host.inventory if isinstance(host.inventory, dict) else {}
    return HostRow(
        host=host,
        status=now,
        status_class=STATUS_CLASSES[now],
        labels=sorted((host.labels or {}).items()),
        gpu_summary=selectors.gpu_summary(inventory),
        gpu_note=str(inventory.get("gpu_note") or "") if not inventory.get("gpus") else "",
    )


def _bytes(value: Any) -> str:
    return filesizeformat(value) if isinstance(value, int) and not isinstance(value, bool) else "—"


def gpu_rows(host: Host) -> list[dict[str, Any]]:
    """Each GPU of the inventory with the last heartbeat's memory use and utilisation (``—`` where none)."""
    stats = {s.get("index"): s for s in host.last_gpu_stats or [] if isinstance(s, dict)}
    rows = []
    for gpu in (host.inventory or {}).get("gpus") or []:
        now = stats.get(gpu.get("index"), {})
        total, used = gpu.get("memory_total_bytes"), now.get("memory_used_bytes")
        share = round(100 * used / total) if isinstance(total, int) and total > 0 and isinstance(used, int) else None
        utilisation = now.get("utilization_percent")
        rows.append({
            "index": gpu.get("index"),
            "name": gpu.get("name") or "GPU",
            "uuid": gpu.get("uuid") or "",
            "memory_total": _bytes(total),
            "memory_used": _bytes(used),
            "memory_share": share,
            "utilisation": f"{utilisation:g} %" if isinstance(utilisation, int | float) else "—",
            "driver_version": gpu.get("driver_version") or "—",
            "cuda_version": gpu.get("cuda_version") or "—",
        })  # fmt: skip
    return rows


def inventory_facts(inventory: dict) -> list[tuple[str, str]]:
    inventory = inventory if isinstance(inventory, dict) else {}
    cores = inventory.get("cpu_cores")
    facts = [
        ("Machine", inventory.get("hostname") or "—"),
        ("CPU", inventory.get("cpu_model") or "—"),
        ("Cores", str(cores) if cores else "—"),
        ("Memory", _bytes(inventory.get("memory_total_bytes"))),
        ("Platform", inventory.get("platform") or "—"),
        ("Python", inventory.get("python") or "—"),
        ("GPUs", selectors.gpu_summary(inventory) + (f" ({inventory['gpu_note']})" if not inventory.get("gpus")
                                                      and inventory.get("gpu_note") else "")),
    ]  # fmt: skip
    return facts
