"""Signals other apps listen to; the registry does not know who listens.

``evidence_changed`` is sent inside the transaction that changed what a review looks at (the
model card, the artifact's inspection record and, later, evaluation results), so a listener
that invalidates approvals does it atomically with the change. Arguments: ``version`` (locked
by the sender), ``reason`` (a sentence), ``actor`` (may be None for tasks).
"""

from django.dispatch import Signal

evidence_changed = Signal()
