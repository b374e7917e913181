"""``effigate bench-rules DATASET --current REF --proposed REF|policy.json``: a rule change's
effect and its price side by side, over a dataset's tickets (``effigate export`` writes one).

It prints the replay table (per tenant, group and metric: tickets, met, breached and hit rate
under the current and the proposed policy, and the differences) and the evaluation cost of
each rule set (policies, rules, compile time, first evaluation, best evaluation and tickets per
second on one thread, best of ``--repeat``), then the tickets left out of both sides. The logic
is :mod:`effigate_engine.cluster.rule_bench`; it runs in this process.
"""

from __future__ import annotations

import argparse
from typing import Any

from effigate_cli.failures import EXIT_USAGE, CommandFailure

#: Left-out tickets printed one per line before the rest is only counted.
SHOWN = 5


def add_commands(commands: Any) -> None:
    """Register ``effigate bench-rules`` on the ``effigate`` subparsers."""
    bench = commands.add_parser(
        "bench-rules",
        help="a rule change's outcome differences and evaluation cost, side by side",
    )
    bench.add_argument("dataset", metavar="DATASET", help="the dataset's folder or fsspec URL")
    bench.add_argument(
        "--current",
        default=None,
        metavar="REF",
        help="a policy id or name of each tenant's catalog (default: each ticket's own)",
    )
    bench.add_argument(
        "--proposed", default=None, metavar="REF|policy.json", help="a policy id or name, or JSON"
    )
    bench.add_argument(
        "--now", default=None, metavar="ISO", help="evaluate at (default: the dataset's as_of)"
    )
    bench.add_argument(
        "--by", action="append", default=None, help="group column (repeatable; default priority)"
    )
    bench.add_argument(
        "--period", default=None, choices=("day", "week", "month"), help="also group by period"
    )
    bench.add_argument(
        "--repeat", type=int, default=3, metavar="N", help="timed evaluations per side (best)"
    )
    bench.set_defaults(handler=run_bench_rules)


def _ms(value: float) -> str:
    return f"{value:,.2f}"


def _count(value: float) -> str:
    return f"{value:,.0f}"


#: How each measure is shown (counts whole, times in milliseconds to 0.01).
SHOWN_AS = {
    "compile_ms": _ms,
    "first_evaluate_ms": _ms,
    "evaluate_ms": _ms,
}


def cost_text(comparison: Any) -> str:
    """The side-by-side cost table as aligned text (``rule_bench.cost_comparison``)."""
    from effigate_engine.cluster.rule_bench import TENANT

    header = ["tenant_id", "measure", "current", "proposed", "change", "proposed/current"]
    rows = [header]
    for r in comparison.to_pylist():
        show = SHOWN_AS.get(r["measure"], _count)
        change = show(r["change"])
        rows.append(
            [
                r[TENANT],
                r["measure"],
                show(r["current"]),
                show(r["proposed"]),
                change if change.startswith("-") else f"+{change}",
                "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def run_bench_rules(args: argparse.Namespace) -> int:
    """Replay the dataset under both policies and time each rule set."""
    from effigate_cli.cluster import _instant, _proposed
    from effigate_engine.cluster.parts import proposed_policy
    from effigate_engine.cluster.rule_bench import bench_rules, cost_comparison
    from effigate_engine.cluster.sla_jobs import digests, policy_names, ticket_parts
    from effigate_server.tables import format_table

    if args.repeat < 1:
        raise CommandFailure(f"--repeat {args.repeat}: not a positive number", EXIT_USAGE)
    if not args.proposed:
        raise CommandFailure("bench-rules: give --proposed REF|policy.json", EXIT_USAGE)
    url = str(args.dataset)
    tenants = list(digests(url, ticket_parts(url)))  # a missing dataset fails here
    policy_names(url, tenants, args.current)  # so does a reference no catalog has
    proposed = _proposed(args.proposed)
    if isinstance(proposed, dict):
        name = proposed_policy(proposed).name  # a bad body names its field
        proposed_label = f"{args.proposed} ({name!r})"
    else:
        policy_names(url, tenants, proposed)
        proposed_label = repr(proposed)
    now = _instant(args.now, url)
    bench = bench_rules(
        url,
        current=args.current,
        proposed=proposed,
        now=now,
        by=args.by or ("priority",),
        period=args.period,
        repeat=args.repeat,
    )
    current_label = repr(args.current) if args.current else "each ticket's own policy"
    print(f"bench-rules {url} at {now.isoformat()}")
    print(f"current: {current_label}; proposed: {proposed_label}")
    print("\noutcome (replay; change = proposed - current):")
    print(format_table(bench.replay) if bench.replay.num_rows else "no tickets")
    print(f"\nevaluation cost (threads=1, best of {bench.repeat}; same tickets both sides):")
    print(cost_text(cost_comparison(bench.costs)))
    left = bench.left_out
    if left.num_rows:
        print(f"\n{left.num_rows} tickets left out of both sides (the engine cannot evaluate them)")
        for message in left.column("message").to_pylist()[:SHOWN]:
            print(f"  {message}")
        if left.num_rows > SHOWN:
            print(f"  … and {left.num_rows - SHOWN} more")
    return 0
