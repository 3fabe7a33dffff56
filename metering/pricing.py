"""Cost attribution: the price book in force for a model at an event's time.

The price book is small; each process keeps it in memory and reloads it when the version
number in Redis moves (bumped when an entry is saved), so a new price applies to the next
batch everywhere without a query per event.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction

from metering.models import PriceBookEntry
from saasops.redis import client as redis_client

VERSION_KEY = "saasops:pricebook:version"
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    effective_from: datetime
    input_per_token: Decimal
    output_per_token: Decimal


class PriceBook:
    def __init__(self, entries: list[PriceBookEntry]) -> None:
        by_model: dict[str, list[Price]] = {}
        for e in sorted(entries, key=lambda e: e.effective_from):
            by_model.setdefault(e.model, []).append(
                Price(e.effective_from, e.input_per_million / MILLION, e.output_per_million / MILLION)
            )
        self._prices = by_model
        self._starts = {model: [p.effective_from for p in prices] for model, prices in by_model.items()}

    def price_at(self, model: str, at: datetime) -> Price | None:
        starts = self._starts.get(model)
        if not starts:
            return None
        i = bisect_right(starts, at)
        return self._prices[model][i - 1] if i else None

    def cost(self, model: str, at: datetime, input_tokens: int, output_tokens: int) -> Decimal | None:
        """Cost in USD, or None when the model has no price at that time (unpriced)."""
        price = self.price_at(model, at)
        if price is None:
            return None
        return input_tokens * price.input_per_token + output_tokens * price.output_per_token


_lock = threading.Lock()
_cached: tuple[Any, PriceBook] | None = None


def price_book() -> PriceBook:
    global _cached
    version = redis_client().get(VERSION_KEY)
    cached = _cached
    if cached is not None and cached[0] == version and version is not None:
        return cached[1]
    with _lock:
        book = PriceBook(list(PriceBookEntry.objects.all()))
        _cached = (version, book)
        if version is None:
            redis_client().setnx(VERSION_KEY, 1)
        return book


def price_book_changed() -> None:
    """Call when the price book changes; processes reload it after the change commits."""
    transaction.on_commit(lambda: redis_client().incr(VERSION_KEY))


@transaction.atomic
def price_entry_create(
    *, model: str, input_per_million: Decimal, output_per_million: Decimal, effective_from: datetime, **extra: object
) -> PriceBookEntry:
    entry = PriceBookEntry.objects.create(
        model=model,
        input_per_million=input_per_million,
        output_per_million=output_per_million,
        effective_from=effective_from,
        **extra,
    )
    price_book_changed()
    return entry
