"""Delivered versus offered (--curve): one trial per offered rate of a fixed ladder, per relay.

Where the zero-loss search asks "how fast without loss", the curve asks what a relay does past
that point: a relay that delivers less when offered more (receive livelock) drops every stream at
once in a burst (issue #14). Each point records the generator's achieved rate (offered), what
arrived (delivered, per second of the generator's sending time), loss % and CPU per delivered
datagram. The last rung `max` runs the generator unpaced: its achieved rate there is the lab's
ceiling, and no relay can be judged above it.

A frame the sender's veth refuses (the relay side's backlog or NAPI ring is full: ENOBUFS) is
counted as offered and lost (mcgen's REFUSED drop, point["refused"]), as a NIC's full ring drops
a frame the wire delivered; the zero-loss search counts it so too (TrialRunner.run). Before
2026-12-07 the generator sent it again, so a relay whose receive lagged slowed the generator to
its own pace and its curve could not show overload.

Verdict: "collapses" when delivered at the highest offered rate is below 90% of the curve's peak
delivered; "holds" otherwise.
"""
from __future__ import annotations

from typing import Callable

COLLAPSE = 0.90


def curve_rates(text: str) -> list[float | None]:
    """"50000,100000,max" -> [50000.0, 100000.0, None] (None: unpaced); ascending, max last."""
    rates: list[float | None] = []
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        if part == "max":
            rates.append(None)
            continue
        value = float(part)
        if value <= 0:
            raise ValueError(f"curve rate must be > 0 or max, got {part!r}")
        rates.append(value)
    paced = [r for r in rates if r is not None]
    if not rates or paced != sorted(paced) or (None in rates and rates[-1] is not None) or rates.count(None) > 1:
        raise ValueError(f"curve rates must ascend, `max` at most once and last: {text!r}")
    return rates


def point(t, requested: float | None) -> dict:
    delivered = t.received / t.seconds if t.seconds > 0 else 0.0
    sent = t.sent * t.copies
    return {"requested": requested, "offered": t.offered_rate, "delivered": delivered,
            "loss_pct": 100.0 * (sent - t.received) / sent if sent else 0.0,
            "sent": t.sent, "received": t.received, "refused": t.refused,
            "relay_cpu_us": t.cpu_us_per_packet("process"), "relay_softirq_us": t.cpu_us_per_packet("relay_softirq"),
            "softirq_us": t.cpu_us_per_packet("softirq"), "kthread_us": t.cpu_us_per_packet("kthread"),
            "relay_busy_us": t.cpu_us_per_packet("relay_busy") if t.relay_busy_s else None,
            "relay_alive": t.relay_alive, "xdp": t.xdp}


def verdict(points: list[dict]) -> tuple[str, float, float]:
    """("collapses" | "holds", peak delivered, delivered at the highest offered rate)."""
    if not points:
        return "n/a", 0.0, 0.0
    peak = max(p["delivered"] for p in points)
    last = max(points, key=lambda p: p["offered"])["delivered"]
    return ("collapses" if last < COLLAPSE * peak else "holds"), peak, last


def run_curve(curve: dict, rates: list[float | None], run_at: Callable, log) -> None:
    for rate in rates:
        t = run_at(rate)
        p = point(t, rate)
        curve["points"].append(p)
        log(f"    {'max' if rate is None else f'{rate:.0f}':>9} asked, {p['offered']:>9.0f} offered, "
            f"{p['delivered']:>9.0f} delivered, loss {p['loss_pct']:.1f}%"
            + (f" ({100.0 * t.refused / t.sent:.1f}% refused by the sender's link)" if t.refused and t.sent else "")
            + ("" if t.relay_alive else " RELAY DIED"))
        if not t.relay_alive:
            break
    curve["verdict"], curve["peak_delivered"], curve["delivered_at_max"] = verdict(curve["points"])
    curve["generator_max"] = next((p["offered"] for p in curve["points"] if p["requested"] is None), None)
    log(f"  => {curve['verdict']}: peak {curve['peak_delivered']:,.0f} pps delivered, "
        f"{curve['delivered_at_max']:,.0f} at the highest offered rate")
