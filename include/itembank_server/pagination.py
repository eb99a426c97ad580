"""GitLab's pagination: offset (Kaminari page arithmetic, the limited count) and keyset, with their headers.

Offset: https://docs.gitlab.com/api/rest/#offset-based-pagination; above the count limit (10,000 on GitLab) the
``X-Total``/``X-Total-Pages`` headers and ``rel="last"`` are left out
(https://docs.gitlab.com/api/rest/#pagination-response-headers).
Keyset: https://docs.gitlab.com/api/rest/#keyset-based-pagination, as ``Gitlab::Pagination::Keyset::RequestContext``,
``Pager``, ``Page`` and ``HeaderBuilder`` (``lib/gitlab/pagination/keyset/*``) implement it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote_plus

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
COUNT_LIMIT = 10_000  # above this GitLab stops counting: no X-Total, X-Total-Pages nor rel="last"
KEYSET_UNAVAILABLE = "Keyset pagination is not yet available for this type of request"


@dataclass(frozen=True)
class PageResult:
    items: list
    page: int
    per_page: int
    next_page: int | None
    prev_page: int | None
    total: int | None  # None when the count exceeded the count limit
    total_pages: int | None


def clamp_page(page: int, per_page: int) -> tuple[int, int]:
    """Kaminari's normalisation: pages below 1 are page 1, per_page outside 1..100 is clamped or defaulted."""
    if per_page < 1:
        per_page = DEFAULT_PER_PAGE
    return max(page, 1), min(per_page, MAX_PER_PAGE)


def paginate(
    fetch: Callable[[int, int], list],
    count: Callable[[int], int],
    page: int,
    per_page: int,
    count_limit: int = COUNT_LIMIT,
) -> PageResult:
    """One page of a collection given ``fetch(offset, limit)`` and ``count(cap)`` (counts at most ``cap``).

    Above ``count_limit`` records the page is served without counts, as Kaminari's ``without_count``.
    """
    offset = (page - 1) * per_page
    limited_total = count(count_limit + 1)
    if limited_total > count_limit:
        rows = fetch(offset, per_page + 1)
        items = rows[:per_page]
        out_of_range = not items
        next_page = page + 1 if len(rows) > per_page and not out_of_range else None
        prev_page = page - 1 if page > 1 and not out_of_range else None
        return PageResult(items, page, per_page, next_page, prev_page, None, None)
    total_pages = math.ceil(limited_total / per_page)
    out_of_range = page > total_pages
    items = [] if out_of_range else fetch(offset, per_page)
    next_page = None if out_of_range or page == total_pages else page + 1
    prev_page = None if out_of_range or page == 1 else page - 1
    return PageResult(items, page, per_page, next_page, prev_page, limited_total, max(total_pages, 1))


def to_query(params: Mapping[str, str]) -> str:
    """Rails' ``Hash#to_query``: CGI-escaped ``key=value`` pairs, sorted."""
    return "&".join(sorted(f"{quote_plus(str(k))}={quote_plus(str(v))}" for k, v in params.items()))


def pagination_headers(result: PageResult, page_url: str, params: Mapping[str, str]) -> list[tuple[str, str]]:
    """X-Per-Page, X-Page, X-Next-Page, X-Prev-Page, Link and (when counted) X-Total and X-Total-Pages."""

    def href(page: int) -> str:
        return f"{page_url}?{to_query({**params, 'page': str(page), 'per_page': str(result.per_page)})}"

    links = []
    if result.prev_page:
        links.append(f'<{href(result.prev_page)}>; rel="prev"')
    if result.next_page:
        links.append(f'<{href(result.next_page)}>; rel="next"')
    links.append(f'<{href(1)}>; rel="first"')
    if result.total_pages is not None:
        links.append(f'<{href(result.total_pages)}>; rel="last"')
    headers = [
        ("X-Per-Page", str(result.per_page)),
        ("X-Page", str(result.page)),
        ("X-Next-Page", str(result.next_page or "")),
        ("X-Prev-Page", str(result.prev_page or "")),
        ("Link", ", ".join(links)),
    ]
    if result.total is not None:
        headers += [("X-Total", str(result.total)), ("X-Total-Pages", str(result.total_pages))]
    return headers


@dataclass(frozen=True)
class KeysetOrder:
    """A keyset request's order: projects offer ``order_by=id`` only (``Gitlab::Pagination::Keyset``)."""

    descending: bool
    per_page: int

    @property
    def bound_param(self) -> str:
        """``RequestContext#filter_with_comparator``: ``id_before`` when descending, ``id_after`` otherwise."""
        return "id_before" if self.descending else "id_after"


def keyset_order(order_by: str, sort: str, per_page: int) -> KeysetOrder | None:
    """The keyset order for ``order_by``/``sort``, or None when GitLab answers 405 (anything but ``id`` alone).

    ``Keyset.available?`` requires the order to be exactly ``{id: sort}``: any other ``order_by`` gets the ``id``
    tie-breaker added and is refused. ``Page#per_page``: 20 when not positive, at most 100.
    """
    if order_by != "id":
        return None
    return KeysetOrder(sort == "desc", DEFAULT_PER_PAGE if per_page <= 0 else min(per_page, MAX_PER_PAGE))


def keyset_headers(order: KeysetOrder, items: list, page_url: str, params: Mapping[str, str]) -> list[tuple[str, str]]:
    """``Pager#finalize``: a ``Link: <...>; rel="next"`` to the records after the page's last one.

    GitLab adds it whenever the page has records, so the page after the last record is empty and has no ``Link``
    ("When the end of the collection is reached ... the Link header is absent and the resulting array is empty").
    No other pagination header is sent.
    """
    if not items:
        return []
    next_params = {**params, order.bound_param: str(items[-1]["id"])}
    return [("Link", f'<{page_url}?{to_query(next_params)}>; rel="next"')]
