"""Dollar prices per million tokens, from one versioned table (`prices.csv`, read on the dates it says).

Prices change and differ by host, so they live in one CSV under version control rather than in the
model configs: a result can always be re-priced, and `table_version()` (a hash of the file) is recorded
with every attempt. A model config names its row with `price` (else its `model` is tried). A key the
table does not know gives a cost of None and a warning, never an error: tokens are still counted.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

PRICES = Path(__file__).with_name("prices.csv")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    key: str
    provider: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cached_input_usd_per_mtok: float | None  # None: cached input is billed as ordinary input
    read_on: str
    source: str
    # Anthropic bills prompt-cache writes above the input rate (5-minute cache: 1.25x); None: ordinary input.
    # Writes to the 1-hour cache (2x) are not told apart in the table and are priced at this rate too.
    cache_write_usd_per_mtok: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
             cache_write_input_tokens: int = 0) -> float:
        """US dollars for one call.

        `input_tokens` is all input, cache reads (`cached_input_tokens`) and cache writes
        (`cache_write_input_tokens`) included, as `usage.Usage` counts it: each part is billed at its
        own rate, the rest at the input rate, so a budget in tokens and one in dollars see the same input.
        """
        cached = min(max(cached_input_tokens, 0), input_tokens)
        written = min(max(cache_write_input_tokens, 0), input_tokens - cached)
        cached_rate = self.input_usd_per_mtok if self.cached_input_usd_per_mtok is None \
            else self.cached_input_usd_per_mtok
        write_rate = self.input_usd_per_mtok if self.cache_write_usd_per_mtok is None \
            else self.cache_write_usd_per_mtok
        usd = ((input_tokens - cached - written) * self.input_usd_per_mtok + cached * cached_rate
               + written * write_rate + output_tokens * self.output_usd_per_mtok) / 1e6
        return round(usd, 8)


def _number(text: str | None) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


@lru_cache(maxsize=4)
def load(path: Path = PRICES) -> dict[str, Price]:
    """The table as {price_key: Price}."""
    table = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            table[row["price_key"]] = Price(
                key=row["price_key"], provider=row["provider"],
                input_usd_per_mtok=float(row["input_usd_per_mtok"]),
                output_usd_per_mtok=float(row["output_usd_per_mtok"]),
                cached_input_usd_per_mtok=_number(row.get("cached_input_usd_per_mtok")),
                read_on=row["read_on"], source=row["source"],
                cache_write_usd_per_mtok=_number(row.get("cache_write_usd_per_mtok")))  # a newer column
    return table


def table_version(path: Path = PRICES) -> str:
    """A short hash of the table, so a recorded cost says which prices produced it."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def price_key(model_config: dict[str, Any] | None) -> str | None:
    """The row a model config is priced by: `price`, else `model`."""
    if not model_config:
        return None
    return model_config.get("price") or model_config.get("model")


_warned: set[str] = set()


def lookup(key: str | None, path: Path = PRICES) -> Price | None:
    """The price for `key`, or None (with a warning, once per key) when the table does not know it."""
    price = load(path).get(key) if key else None
    if price is None and str(key) not in _warned:
        _warned.add(str(key))
        log.warning("no price for %r in %s: its calls are counted in tokens, with cost null", key, path.name)
    return price


def cost_usd(price: Price | None, input_tokens: int | None, output_tokens: int | None,
             cached_input_tokens: int | None = 0, cache_write_input_tokens: int | None = 0) -> float | None:
    """Cost of one call, or None when the price or the token counts are unknown."""
    if price is None or input_tokens is None or output_tokens is None:
        return None
    return price.cost(input_tokens, output_tokens, cached_input_tokens or 0, cache_write_input_tokens or 0)
