"""GitLab's offset pagination: Kaminari page arithmetic, the limited count and the response headers."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote_plus

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
COUNT_LIMIT = 10_000  # above this GitLab stops counting: no X-Total, X-Total-Pages nor rel="last"


@dataclass(frozen=True)
class PageResult:
    items: list
    page: int
    per_page: int
    next_page: int | None
    prev_page: int | None
    total: int | None  # None when the count exceeded COUNT_LIMIT
    total_pages: int | None


def clamp_page(page: int, per_page: int) -> tuple[int, int]:
    """Kaminari's normalisation: pages below 1 are page 1, per_page outside 1..100 is clamped or defaulted."""
    if per_page < 1:
        per_page = DEFAULT_PER_PAGE
    return max(page, 1), min(per_page, MAX_PER_PAGE)


def paginate(fetch: Callable[[int, int], list], count: Callable[[int], int], page: int, per_page: int) -> PageResult:
    """One page of a collection given ``fetch(offset, limit)`` and ``count(cap)`` (counts at most ``cap``)."""
    offset = (page - 1) * per_page
    limited_total = count(COUNT_LIMIT + 1)
    if limited_total > COUNT_LIMIT:
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
