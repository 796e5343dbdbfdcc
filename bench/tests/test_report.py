"""The bench report's judgement of issue #14's CPU goal (bench/e2e/report.py, bench/summary.py):
which figures it compares, against which kernel row, and that its tables are printed at all.
Run by `make test` (python3 -m unittest discover -s bench/tests); needs no root and no lab."""
from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from e2e.report import cost_rows, judged_ratio, keyed as by, print_report, reference_row  # noqa: E402
import summary  # noqa: E402


def row(relay: str, busy: float, perf: float | None = None, at_rate: float | None = None, loss: float = 0.0,
        streams: int = 1, payload: int = 64, copies: int = 1) -> dict:
    r = {"relay": relay, "family": "ipv4", "streams": streams, "payload": payload, "status": "measured",
         "zero_loss_pps": 100_000.0, "generator_limited": False, "below_floor": False, "confirmed": True,
         "min_rate": 2000, "mbit_s": 51.2, "cpu_kind": "none" if relay.startswith("kernel") else "process",
         "relay_cpu_us": None if relay.startswith("kernel") else busy, "relay_softirq_us": 0.0, "softirq_us": 0.0,
         "kthread_us": None, "relay_busy_us": busy, "relay_busy_us_per_input": busy * copies, "trials": 10}
    if perf is not None:
        r.update(perf_busy_us=perf, perf_busy_us_per_input=perf * copies)
    if at_rate is not None:
        r.update(cost_rate=100_000, cost_offered=99_999.0, cost_loss_pct=loss, cost_perf_busy_us=at_rate,
                 cost_perf_busy_us_per_input=at_rate * copies, cost_perf_report="bench/results/x.perf.txt")
    return r


class JudgedRatio(unittest.TestCase):
    def test_equal_load_comes_first(self):
        mine, kernel = row("mcrelay-xdp", 1.0, perf=3.0, at_rate=4.0), row("kernel-nft", 4.0, perf=6.0, at_rate=8.0)
        value, basis = judged_ratio(mine, kernel)
        self.assertAlmostEqual(value, 0.5)
        self.assertEqual(basis, "perf at 99,999 pps offered")

    def test_loss_at_the_common_rate_is_said(self):
        mine, kernel = row("mcrelay-xdp", 1.0, at_rate=4.0, loss=10.7), row("kernel-nft", 4.0, at_rate=8.0, loss=0.4)
        self.assertEqual(judged_ratio(mine, kernel)[1], "perf at 99,999 pps offered (relay lost 10.7%)")

    def test_falls_back_to_perf_then_proc_stat(self):
        mine, kernel = row("mcrelay", 2.0, perf=3.0), row("kernel-nft", 4.0, perf=6.0, at_rate=8.0)
        self.assertEqual(judged_ratio(mine, kernel), (0.5, "perf at each zero-loss rate"))
        mine, kernel = row("mcrelay", 2.0), row("kernel-nft", 4.0, perf=6.0)
        self.assertEqual(judged_ratio(mine, kernel), (0.5, "/proc/stat at each zero-loss rate"))
        self.assertIsNone(judged_ratio(mine, None))

    def test_fan_out_is_per_input_datagram(self):
        mine = row("mcrelay-xdp", 1.0, at_rate=3.0, copies=8)
        kernel = row("kernel-nft", 1.0, at_rate=2.0, copies=8)
        self.assertAlmostEqual(judged_ratio(mine, kernel, per_input=True)[0], 1.5)


class KernelReference(unittest.TestCase):
    def test_multicast_routing_is_preferred_then_nftables(self):
        mine, nft, mroute = row("mcrelay", 2.0), row("kernel-nft", 4.0), row("kernel", 5.0)
        self.assertIs(reference_row(by([mine, nft, mroute]), mine), mroute)
        self.assertIs(reference_row(by([mine, nft]), mine), nft)
        self.assertIsNone(reference_row(by([mine]), mine))

    def test_cost_table_is_printed_against_kernel_nft_alone(self):
        # It was not, until 2026-12-07: the report looked for a `kernel` row only.
        rows = [row("mcrelay-xdp", 1.0, at_rate=3.0), row("kernel-nft", 4.0, at_rate=6.0)]
        text = print_report(rows)
        self.assertIn("CPU per datagram on the relay's core against the kernel's", text)
        verdicts = [line[-1] for line in cost_rows(rows)]
        self.assertEqual(verdicts, ["met (perf at 99,999 pps offered)", ""])

    def test_summary_judges_as_the_report(self):
        rows = [row("mcrelay-xdp", 1.0, perf=1.0, at_rate=4.0), row("kernel-nft", 1.0, perf=4.0, at_rate=5.0)]
        lines = summary.cpu_goal_rows(by(rows), "ipv4", 1, 64, "1 stream × 64 B")
        self.assertEqual(len(lines), 1)
        self.assertIn("mcrelay-xdp / kernel-nft", lines[0][1])
        self.assertIn("perf at 99,999 pps offered", lines[0][1])
        self.assertEqual((lines[0][2], lines[0][4]), ("0.80×", "**missed**"))


if __name__ == "__main__":
    unittest.main()
