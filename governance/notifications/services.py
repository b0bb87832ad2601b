"""Notification and webhook writes.

``notify`` is the one entry point other apps call, inside their own transactions: the in-app
notifications are written with the caller's change, emails and webhook deliveries leave on
commit. Notifications and deliveries are not governed writes; a webhook's configuration is, so
creating, changing, testing and deleting one is audited (never with its secret).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import partial

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import get_connection, send_mail
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from governance.accounts.capabilities import Capability
from governance.accounts.models import Team
from governance.accounts.permissions import require, require_scope
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.celery import enqueue_on_commit
from governance.core.errors import NotFound, ValidationFailed
from governance.notifications import crypto, signing
from governance.notifications.models import (
    PING,
    DeliveryStatus,
    EventKind,
    Notification,
    Webhook,
    WebhookDelivery,
)

User = get_user_model()
logger = logging.getLogger(__name__)

DELIVER_TASK = "workers.notifications.deliver_webhook"
USER_AGENT = "Charter-Webhooks/1"
SECRET_MIN_LENGTH = 16
SECRET_MAX_LENGTH = 200
ERROR_MAX_LENGTH = 300


def _setting(name: str, default: float, cast=float):
    """A number from settings, else from the environment, else the default."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name) or None
    if value is None:
        return default
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None


def delivery_timeout() -> float:
    return _setting("WEBHOOK_TIMEOUT_SECONDS", 5.0)


def max_attempts() -> int:
    return _setting("WEBHOOK_MAX_ATTEMPTS", 6, int)


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: exponential from the base."""
    return _setting("WEBHOOK_RETRY_BASE_SECONDS", 30.0) * 2 ** (attempts - 1)


# --- notify ---------------------------------------------------------------------------------


@transaction.atomic
def notify(
    *, event: str, team_id: int, title: str, body: str, url: str, recipients: Iterable[User], payload: dict
) -> None:
    """Tell people and the team's webhooks that ``event`` happened.

    One in-app notification per distinct active recipient, now; one email per recipient with an
    address, and one delivery per active webhook of the team subscribed to ``event``, on commit.
    Call it inside the transaction of the change it announces: if that rolls back, nothing is sent.
    """
    if event not in EventKind.values:
        raise ValidationFailed(
            f"'{event}' is not an event kind. Use one of: {', '.join(EventKind.values)}.", code="invalid_event"
        )
    people: dict[int, User] = {}
    for user in recipients:
        if user.is_active and user.pk not in people:
            people[user.pk] = user
    now = timezone.now()
    title = " ".join(title.split())[:200]  # one line: it is also an email subject
    Notification.objects.bulk_create(
        Notification(
            recipient=user, event=event, title=title, body=body, url=url[:500], team_id=team_id, created_at=now
        )
        for user in people.values()
    )
    addresses = [user.email for user in people.values() if user.email]
    if addresses:
        transaction.on_commit(partial(_send_emails, subject=title, message=_email_text(body, url), to=addresses))

    webhooks = [
        w
        for w in Webhook.objects.filter(team_id=team_id, is_active=True).select_related("team")
        if w.subscribes_to(event)
    ]
    if webhooks:
        _deliveries_create(webhooks=webhooks, event=event, data=payload, now=now)


def _email_text(body: str, url: str) -> str:
    site = str(getattr(settings, "SITE_URL", "") or os.environ.get("SITE_URL", "")).rstrip("/")
    link = f"{site}{url}" if url.startswith("/") and site else url
    return f"{body}\n\n{link}".strip() if link else body


def _send_emails(*, subject: str, message: str, to: list[str]) -> None:
    """After commit: one message per address, so recipients do not see each other. A mail server
    failure is logged, not raised: the change it announces has committed."""
    connection = get_connection()
    for address in to:
        try:
            send_mail(f"[Charter] {subject}", message, settings.DEFAULT_FROM_EMAIL, [address], connection=connection)
        except Exception:
            logger.exception("Could not send a notification email (%s).", subject)


def _deliveries_create(*, webhooks: list[Webhook], event: str, data: dict, now: dt.datetime) -> list[WebhookDelivery]:
    deliveries = []
    for webhook in webhooks:
        delivery = WebhookDelivery(webhook=webhook, event=event, created_at=now, payload={})
        delivery.payload = {
            "id": str(delivery.event_id),
            "event": event,
            "created_at": now.isoformat(),
            "team": {"id": webhook.team_id, "name": webhook.team.name},
            "data": data,
        }
        deliveries.append(delivery)
    deliveries = WebhookDelivery.objects.bulk_create(deliveries)
    for delivery in deliveries:
        enqueue_on_commit(DELIVER_TASK, delivery.pk)
    return deliveries


# --- notifications --------------------------------------------------------------------------
# A person's own inbox: not governed, not audited.


def notification_mark_read(*, user, notification: Notification) -> Notification:
    if notification.recipient_id != user.pk:
        raise NotFound("No such notification.", code="notification_not_found")
    if notification.read_at is None:
        now = timezone.now()
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=now)
        notification.read_at = now
    return notification


def notification_mark_all_read(*, user, team_id: int | None = None) -> int:
    """Mark every unread notification of ``user`` read (of one team only, when given); returns how many."""
    unread = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if team_id is not None:
        unread = unread.filter(team_id=team_id)
    return unread.update(read_at=timezone.now())


# --- webhooks -------------------------------------------------------------------------------

_url_validator = URLValidator(schemes=["http", "https"])


def _clean_url(url: str) -> str:
    url = (url or "").strip()
    try:
        _url_validator(url)
    except DjangoValidationError:
        raise ValidationFailed(
            "Give the full http:// or https:// address of the endpoint.",
            code="invalid_url",
            fields={"url": ["Enter an http:// or https:// URL."]},
        ) from None
    if len(url) > 500:
        raise ValidationFailed(
            "The URL is longer than 500 characters.", code="invalid_url", fields={"url": ["Too long."]}
        )
    if problem := address_problem(url):
        raise ValidationFailed(problem, code="private_address", fields={"url": [problem]})
    return url


def address_problem(url: str) -> str | None:
    """Why the worker must not POST to this URL: a host that resolves to a loopback, private,
    link-local or otherwise internal address (the worker sits inside the network; a webhook is
    not a way to reach it). ``WEBHOOK_ALLOW_PRIVATE_ADDRESSES`` lifts this for on-premise receivers."""
    if getattr(settings, "WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False):
        return None
    return _resolve(url)[1]


def _resolve(url: str) -> tuple[list[str], str | None]:
    """The receiver's addresses, resolved once, and why they may not be used (None when they may).

    The delivery then connects to one of exactly these addresses (``_PinnedAddress``): resolving the
    name again at connect time would let a DNS answer that changed in between (rebinding) send
    the request inside after the check passed.
    """
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return [], f"The host {host[:100]!r} does not resolve."
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not getattr(settings, "WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False):
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if not address.is_global:
                return addresses, (
                    f"The host {host[:100]!r} resolves to an internal address ({address}); webhooks go to public "
                    "receivers only (WEBHOOK_ALLOW_PRIVATE_ADDRESSES=true allows internal ones)."
                )
    return addresses, None


def _clean_events(events: Iterable[str] | None) -> list[str]:
    if events is None:
        return list(EventKind.values)
    events = list(dict.fromkeys(events))
    unknown = [e for e in events if e not in EventKind.values]
    if unknown or not events:
        detail = f"Choose events from: {', '.join(EventKind.values)}." + (
            f" Unknown: {', '.join(map(str, unknown))}." if unknown else ""
        )
        raise ValidationFailed(detail, code="invalid_event", fields={"events": [detail]})
    return [e for e in EventKind.values if e in events]


def _clean_secret(secret: str) -> str:
    if (
        not SECRET_MIN_LENGTH <= len(secret) <= SECRET_MAX_LENGTH
        or not secret.isprintable()
        or secret != secret.strip()
    ):
        detail = f"A secret is {SECRET_MIN_LENGTH} to {SECRET_MAX_LENGTH} printable characters, no surrounding spaces."
        raise ValidationFailed(detail, code="invalid_secret", fields={"secret": [detail]})
    return secret


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _require_manage(actor, team_id: int) -> None:
    require_scope(actor, "admin")
    require(actor, Capability.TEAM_MANAGE, team_id=team_id, what="manage this team's webhooks")


def _locked(webhook: Webhook) -> Webhook:
    locked = Webhook.objects.select_for_update().filter(pk=webhook.pk).first()
    if locked is None:
        raise NotFound("This webhook no longer exists.", code="webhook_not_found")
    return locked


@transaction.atomic
def webhook_create(
    *,
    actor,
    team: Team,
    url: str,
    events: Iterable[str] | None = None,
    secret: str | None = None,
    is_active: bool = True,
) -> tuple[Webhook, str]:
    """Create a webhook and return it with its signing secret, which is shown this once."""
    _require_manage(actor, team.pk)
    url, events = _clean_url(url), _clean_events(events)
    secret = _clean_secret(secret) if secret else new_secret()
    webhook = Webhook.objects.create(
        team=team,
        url=url,
        events=events,
        is_active=is_active,
        secret_encrypted=crypto.encrypt(secret),
        created_by=actor,
    )
    audit.record(action=AuditAction.WEBHOOK_CREATE, obj=webhook, after=audit.snapshot(webhook), actor=actor)
    return webhook, secret


@transaction.atomic
def webhook_update(
    *,
    actor,
    webhook: Webhook,
    url: str | None = None,
    events: Iterable[str] | None = None,
    is_active: bool | None = None,
    secret: str | None = None,
) -> Webhook:
    """Change what is given; a new ``secret`` replaces the old one (the audit says only that it did)."""
    _require_manage(actor, webhook.team_id)
    webhook = _locked(webhook)
    before = audit.snapshot(webhook)
    if url is not None:
        webhook.url = _clean_url(url)
    if events is not None:
        webhook.events = _clean_events(events)
    if is_active is not None:
        webhook.is_active = is_active
    if secret is not None:
        webhook.secret_encrypted = crypto.encrypt(_clean_secret(secret))
    webhook.save()
    audit.record(
        action=AuditAction.WEBHOOK_UPDATE, obj=webhook, before=before, after=audit.snapshot(webhook),
        changes={"secret_rotated": True} if secret is not None else None, actor=actor,
    )  # fmt: skip
    return webhook


@transaction.atomic
def webhook_delete(*, actor, webhook: Webhook) -> None:
    """Delete the webhook and its delivery log; deliveries still queued find nothing to send."""
    _require_manage(actor, webhook.team_id)
    webhook = _locked(webhook)
    before = audit.snapshot(webhook)
    pk, team_id = webhook.pk, webhook.team_id
    webhook.delete()
    audit.record(
        action=AuditAction.WEBHOOK_DELETE, object_type="notifications.webhook", object_id=str(pk), team_id=team_id,
        before=before, actor=actor,
    )  # fmt: skip


@transaction.atomic
def webhook_test(*, actor, webhook: Webhook) -> WebhookDelivery:
    """Send a ``ping`` to the webhook, whatever it subscribed to and even when disabled."""
    _require_manage(actor, webhook.team_id)
    webhook = Webhook.objects.select_related("team").filter(pk=webhook.pk).first()
    if webhook is None:
        raise NotFound("This webhook no longer exists.", code="webhook_not_found")
    data = {"message": "A test delivery from Charter.", "webhook": webhook.pk, "requested_by": actor.get_username()}
    [delivery] = _deliveries_create(webhooks=[webhook], event=PING, data=data, now=timezone.now())
    audit.record(action=AuditAction.WEBHOOK_TEST, obj=webhook, changes={"delivery": delivery.pk}, actor=actor)
    return delivery


# --- delivery -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery_id: int
    status: str  # a DeliveryStatus, or "missing" for a delivery deleted with its webhook
    attempts: int
    status_code: int | None = None
    error: str = ""
    sent: bool = False  # whether this call made a request
    retry_in: float | None = None  # seconds until the next attempt is due; None: no further attempt

    @property
    def retryable(self) -> bool:
        return self.retry_in is not None

    def as_dict(self) -> dict:
        return asdict(self)


def _outcome(delivery: WebhookDelivery, *, sent: bool, retry_in: float | None = None) -> DeliveryOutcome:
    return DeliveryOutcome(
        delivery_id=delivery.pk, status=delivery.status, attempts=delivery.attempts,
        status_code=delivery.last_status_code, error=delivery.last_error, sent=sent, retry_in=retry_in,
    )  # fmt: skip


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\"()\]]+")


def _not_connected(exc: requests.ConnectionError) -> bool:
    """Whether the request failed before a connection was made (nothing was sent). The exception
    types are urllib3's, taken from where requests imports them (urllib3 is not ours to import)."""
    from requests.adapters import ConnectTimeoutError, MaxRetryError, NewConnectionError

    reason = exc.args[0].reason if exc.args and isinstance(exc.args[0], MaxRetryError) else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _connection_problem(exc: Exception) -> str:
    """The socket-level reason, without the URL (its query string may hold the receiver's token)."""
    found = _ERRNO.search(str(exc))
    return found.group(0).strip() if found else type(exc).__name__


PINNED_ADDRESSES_TRIED = 3  # of a name's checked addresses, each with its own connect timeout


class _PinnedAddress(requests.adapters.HTTPAdapter):
    """Connects to the one address the delivery checked, never to what the name resolves to later.

    The request keeps its URL: the ``Host`` header, and for https the name sent in SNI and the name
    the certificate must match, are the receiver's host name; only the TCP connection goes to
    ``address``. Proxies from the environment are not used: through one, the proxy would resolve
    the name again.
    """

    def __init__(self, address: str):
        self.address = address
        super().__init__(max_retries=0)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        if host_params["scheme"] == "https":
            pool_kwargs = {
                **pool_kwargs,
                "server_hostname": host_params["host"],
                "assert_hostname": host_params["host"],
            }
        return self.poolmanager.connection_from_host(**{**host_params, "host": self.address}, pool_kwargs=pool_kwargs)

    def request_url(self, request, proxies):
        return request.path_url


def _send_pinned(url: str, address: str, body: bytes, headers: dict, timeout: float) -> int:
    from urllib.parse import urlsplit

    netloc = urlsplit(url).netloc.rpartition("@")[2]  # the Host header: the name (and port) as given
    with requests.Session() as session:
        session.mount("http://", _PinnedAddress(address))
        session.mount("https://", _PinnedAddress(address))
        # stream: the response body is never read, so a huge or slow one costs nothing
        with session.post(
            url, data=body, headers={**headers, "Host": netloc}, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            return response.status_code


def _post(url: str, body: bytes, headers: dict, timeout: float) -> tuple[int | None, str, bool]:
    """One request: (status code, short error, whether another attempt may succeed)."""
    # checked again at delivery (DNS may have changed since the webhook was saved), and the
    # connection goes to an address this check passed
    addresses, problem = _resolve(url)
    if not addresses:
        return None, f"Connection failed: {problem}", True
    if problem:
        return None, "The receiver's host resolves to an internal address; not sent.", False
    try:
        tried = addresses[:PINNED_ADDRESSES_TRIED]
        for address in tried:  # the next checked address only when this one took no connection
            try:
                code = _send_pinned(url, address, body, headers, timeout)
                break
            except requests.ConnectionError as exc:
                if address == tried[-1] or not _not_connected(exc):
                    raise
    except requests.Timeout:
        return None, f"Timed out after {timeout:g} s.", True
    except requests.ConnectionError as exc:
        return None, f"Connection failed: {_connection_problem(exc)}.", True
    except requests.RequestException as exc:
        return None, f"Request failed: {type(exc).__name__}.", False
    if 200 <= code < 300:
        return code, "", False
    if 300 <= code < 400:
        return code, f"HTTP {code}: redirects are not followed; give the final URL.", False
    return code, f"HTTP {code}.", code >= 500 or code == 429


def webhook_deliver(*, delivery_id: int) -> DeliveryOutcome:
    """Make one attempt at a delivery and record it.

    Idempotent: the row stays locked through the request, so a redelivered task waits and then
    finds the delivery delivered (or given up) and sends nothing. 2xx delivers; connection
    errors, timeouts, 5xx and 429 leave it pending with ``retry_in`` set until the attempts run
    out; anything else fails it for good.
    """
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("webhook")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return DeliveryOutcome(delivery_id=delivery_id, status="missing", attempts=0)
        if delivery.status != DeliveryStatus.PENDING:
            return _outcome(delivery, sent=False)
        webhook = delivery.webhook
        now = timezone.now()
        if not webhook.is_active and delivery.event != PING:
            return _give_up(delivery, "The webhook was disabled before this delivery was sent.")
        try:
            secret = crypto.decrypt(webhook.secret_encrypted)
        except crypto.SecretUnreadable as exc:
            return _give_up(delivery, str(exc))

        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Charter-Event": delivery.event,
            "X-Charter-Delivery": str(delivery.event_id),
            signing.HEADER: signing.sign(secret, body, int(now.timestamp())),
        }
        code, error, retryable = _post(webhook.url, body, headers, delivery_timeout())

        now = timezone.now()
        delivery.attempts += 1
        delivery.last_status_code = code
        delivery.last_error = error[:ERROR_MAX_LENGTH]
        retry_in = None
        if code is not None and 200 <= code < 300:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, now, None
        elif retryable and delivery.attempts < max_attempts():
            retry_in = retry_delay(delivery.attempts)
            delivery.next_attempt_at = now + dt.timedelta(seconds=retry_in)
        else:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        delivery.save(
            update_fields=["attempts", "last_status_code", "last_error", "status", "delivered_at", "next_attempt_at"]
        )
    logger.info(
        "Webhook delivery %s (%s) attempt %d: %s%s",
        delivery.pk, delivery.event, delivery.attempts, delivery.status, f", HTTP {code}" if code else f", {error}",
    )  # fmt: skip
    return _outcome(delivery, sent=True, retry_in=retry_in)


def _give_up(delivery: WebhookDelivery, reason: str) -> DeliveryOutcome:
    delivery.status, delivery.last_error, delivery.next_attempt_at = (
        DeliveryStatus.FAILED,
        reason[:ERROR_MAX_LENGTH],
        None,
    )
    delivery.save(update_fields=["status", "last_error", "next_attempt_at"])
    return _outcome(delivery, sent=False)
