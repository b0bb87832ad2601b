"""Celery tasks of the notifications app (webhook deliveries)."""

from governance.celery import AuditedTask, app


@app.task(base=AuditedTask, bind=True, name="workers.notifications.deliver_webhook", max_retries=None)
def deliver_webhook(self, delivery_id: int) -> dict:
    """One attempt per run; the service decides whether and when another is due (exponential
    backoff up to WEBHOOK_MAX_ATTEMPTS) and marks the delivery failed after the last one."""
    from governance.notifications import services

    outcome = services.webhook_deliver(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.as_dict()
