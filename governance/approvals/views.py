"""Browser views of the approvals app (being built: see the approvals UI work)."""

from django.http import HttpResponse


def _pending(request, pk=None):
    return HttpResponse("This page is being built.", status=501)


review_queue = review_detail = review_decide = review_withdraw = review_request = checklist_tick = _pending
policy_list = policy_create = policy_detail = policy_edit = _pending
