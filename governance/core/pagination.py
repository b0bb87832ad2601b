from rest_framework.pagination import CursorPagination, PageNumberPagination


class PagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class NewestFirstCursorPagination(CursorPagination):
    """Stable, index-friendly paging for tables that grow without bound (versions, audit)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"

    def paginate_first_page(self, fetch, request, view) -> list:
        """The first page from ``fetch(limit=n)``, rows already in ``ordering`` order, leaving the
        state ``paginate_queryset`` leaves so the response and its links are the same."""
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, None, view)
        self.cursor = None
        results = fetch(limit=self.page_size + 1)
        self.page = results[: self.page_size]
        self.has_next, self.has_previous = len(results) > len(self.page), False
        self.next_position = self._get_position_from_instance(results[-1], self.ordering) if self.has_next else None
        self.previous_position = None
        if self.has_next and self.template is not None:
            self.display_page_controls = True
        return self.page
