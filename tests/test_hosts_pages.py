"""The compute host pages (issue 15, point 6, without benchmarks yet): the list with each host's status,
last heartbeat, labels, GPUs and queue, an empty state that says how to add a host, and each host's page
with its inventory, GPU table and last figures; every signed-in user sees them, in a fixed number of
queries."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest
from django.utils import timezone

from governance.core.context import audit_context
from governance.hosts import services
from governance.hosts.models import Host
from tests.test_hosts_api import INVENTORY, NO_GPU, STATS

pytestmark = pytest.mark.usefixtures("fast_passwords")


@pytest.fixture
def hosts(users):
    """gpu-1 online with two H100s and figures, cpu-1 stale without a GPU."""
    with audit_context(source="cli", actor=users.operator):
        gpu, _ = services.host_register(actor=users.operator, name="gpu-1", labels={"gpu": "h100", "env": "prod"},
                                        inventory=INVENTORY, agent_version="1.0")  # fmt: skip
        cpu, _ = services.host_register(actor=users.operator, name="cpu-1", inventory=NO_GPU)
    Host.objects.filter(pk=gpu.pk).update(last_gpu_stats=STATS)
    Host.objects.filter(pk=cpu.pk).update(last_heartbeat_at=timezone.now() - dt.timedelta(minutes=3))
    return gpu, cpu


def _text(response) -> str:
    return unescape(response.content.decode())


def test_the_empty_host_list_says_how_to_add_a_host(login, users):
    page = _text(login(users.operator).get("/hosts/"))
    assert "No compute hosts yet" in page
    assert "python manage.py host_agent --name gpu-1" in page and "--token-file" in page
    assert "--api-url http://testserver" in page
    assert "host</code> scope" in page and 'href="/tokens/"' in page  # an operator may create the token
    viewer_page = _text(login(users.viewer).get("/hosts/"))
    assert "An operator or admin" in viewer_page and 'href="/tokens/"' not in viewer_page.split("No compute")[1]


def test_the_host_list_shows_status_heartbeat_labels_gpus_and_queue(login, users, hosts):
    response = login(users.viewer).get("/hosts/")
    assert response.status_code == 200
    page = _text(response)
    rows = page.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert [re.search(r'href="/hosts/([^/]+)/"', r).group(1) for r in rows] == ["cpu-1", "gpu-1"]
    cpu, gpu = rows
    assert "Online" in gpu and "stage-approved" in gpu and "last heartbeat just now" in gpu
    assert "gpu=h100" in gpu and "env=prod" in gpu and "2 × NVIDIA H100 80GB HBM3" in gpu and "host.gpu-1" in gpu
    assert "Stale" in cpu and "last heartbeat 3\xa0minutes ago" in cpu and "no GPU" in cpu and "no NVIDIA driver" in cpu
    assert 'href="/hosts/"' in page.split("</nav>")[0]  # the nav link


def test_the_host_list_filters_like_the_api_and_a_bad_filter_is_400(login, users, hosts):
    client = login(users.viewer)
    page = _text(client.get("/hosts/?status=stale"))
    assert "cpu-1" in page and 'href="/hosts/gpu-1/"' not in page
    page = _text(client.get("/hosts/?label=gpu=h100"))
    assert 'href="/hosts/gpu-1/"' in page and 'href="/hosts/cpu-1/"' not in page
    response = client.get("/hosts/?label=nonsense")
    assert response.status_code == 400 and "Some filters were ignored" in _text(response)


def test_the_host_page_shows_inventory_gpus_labels_and_last_figures(login, users, hosts):
    response = login(users.auditor).get("/hosts/gpu-1/")
    assert response.status_code == 200
    page = _text(response)
    assert "AMD EPYC 9654" in page and "192" in page and "1.5\xa0TB" in page and "gpu-box-1" in page
    gpus = page.split('id="gpus"')[1].split('id="benchmarks"')[0]
    assert gpus.count("NVIDIA H100 80GB HBM3") == 2 and "GPU-4d1b6b1e" in gpus
    assert "12.0\xa0GB of 79.6\xa0GB" in gpus and "87 %" in gpus and "550.54.15" in gpus and "12.4" in gpus
    assert "Benchmarks run on this host will be listed here" in page
    assert "host.gpu-1" in page and "gpu=h100" in page and "agent 1.0" in page
    no_gpu = _text(login(users.auditor).get("/hosts/cpu-1/"))
    assert "No GPU" in no_gpu and "no NVIDIA driver" in no_gpu and "Stale" in no_gpu


def test_host_pages_need_a_sign_in_and_an_unknown_host_is_404(client, login, users, hosts):
    assert client.get("/hosts/").status_code == 302 and client.get("/hosts/gpu-1/").status_code == 302
    assert login(users.viewer).get("/hosts/nowhere/").status_code == 404


def test_the_host_list_reads_a_fixed_number_of_queries(login, users, django_assert_max_num_queries):
    client = login(users.viewer)
    client.get("/hosts/")
    with audit_context(source="cli", actor=users.operator):
        for n in range(40):
            services.host_register(actor=users.operator, name=f"gpu-{n}", inventory=INVENTORY, labels={"n": str(n)})
    with django_assert_max_num_queries(8):
        response = client.get("/hosts/")
    assert _text(response).count('href="/hosts/gpu-') == 40
