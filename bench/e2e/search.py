"""Zero-loss rate search: geometric bisection over the offered rate, bounded in trials and time.

1. A trial at --min-rate (repeated once if it loses: a relay still digesting its start-up).
   Loss there twice: the result is "below the floor".
2. A trial at --max-rate. Zero loss there means the relay kept up with everything the generator
   offered: the result is that offered rate, marked generator-limited (a lower bound).
3. Bisect on sqrt(lo*hi) until hi/lo <= --precision, --max-trials or --budget seconds.
4. Confirm the best passing rate once more; if the repeat loses, step down by the precision
   factor (at most 3 times) so a lucky trial is not the headline.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from .trial import Trial


@dataclass
class SearchResult:
    best: Trial | None
    trials: list[Trial] = field(default_factory=list)
    generator_limited: bool = False
    below_floor: bool = False
    confirmed: bool = False
    stopped_by: str = "precision"

    @property
    def rate(self) -> float:
        return self.best.offered_rate if self.best else 0.0


def zero_loss_search(run_at: Callable[[float], Trial], min_rate: float, max_rate: float, precision: float,
                     max_trials: int, budget: float, log: Callable[[str], None]) -> SearchResult:
    started = time.monotonic()
    result = SearchResult(best=None)

    def trial(rate: float) -> Trial:
        t = run_at(rate)
        result.trials.append(t)
        log(f"    {rate:>9.0f} pps asked, {t.offered_rate:>9.0f} offered: "
            + ("zero loss" if t.zero_loss else
               f"lost {t.lost}/{t.sent}" + (f" dup {t.duplicates}" if t.duplicates else "")
               + (f" stray {t.stray}" if t.stray else "") + ("" if t.relay_alive else " RELAY DIED")))
        return t

    def out_of_time() -> str | None:
        if len(result.trials) >= max_trials:
            return "max-trials"
        if time.monotonic() - started > budget:
            return "budget"
        return None

    low = trial(min_rate)
    if not low.zero_loss and low.relay_alive:
        low = trial(min_rate)
    if not low.zero_loss:
        result.below_floor = True
        result.stopped_by = "floor" if low.relay_alive else "relay died"
        return result
    top = trial(max_rate)
    if top.zero_loss:
        result.best, result.generator_limited, result.confirmed = top, True, True
        result.stopped_by = "generator"
        return result
    if not top.relay_alive:
        result.stopped_by = "relay died"
        return result
    # when the generator could not reach max_rate, bisect below what it did reach
    hi = min(max_rate, top.offered_rate * 1.02)
    lo, result.best = min_rate, low
    while hi / lo > precision:
        reason = out_of_time()
        if reason:
            result.stopped_by = reason
            break
        mid = math.sqrt(lo * hi)
        t = trial(mid)
        if t.zero_loss:
            lo, result.best = mid, t
        else:
            hi = mid
    # confirm (a repeat at the same rate), stepping down when the repeat loses
    rate = lo
    for _ in range(3):
        if rate <= min_rate:
            result.confirmed = True
            break
        t = trial(rate)
        if t.zero_loss:
            result.best, result.confirmed = t, True
            break
        rate = max(min_rate, rate / precision)
        if time.monotonic() - started > budget * 1.5:
            break
    return result
