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
        "--group-period",
        dest="period",
        default=None,
        choices=("day", "week", "month"),
        help="also group the replay by period",
    )
    bench.add_argument(
        "--repeat", type=int, default=3, metavar="N", help="timed evaluations per side (best)"
    )
    bench.add_argument(
        "--out", default=None, metavar="DIR", help="also write the tables as Parquet there"
    )
    money = bench.add_argument_group(
        "billing", "--billing: the contracts invoiced under current and proposed terms"
    )
    money.add_argument("--billing", action="store_true", help="the billing counterpart")
    money.add_argument(
        "--period", dest="day", default=None, metavar="YYYY-MM-DD",
        help="a local date: each contract is billed for its period holding it",
    )  # fmt: skip
    money.add_argument("--proposed-card", default=None, metavar="card.json", help="a rate card")
    money.add_argument(
        "--proposed-terms", default=None, metavar="terms.json", help="terms sections to replace"
    )
    money.add_argument(
        "--current-card", default=None, metavar="card.json",
        help="price the current side by this card (default: each contract's own)",
    )  # fmt: skip
    money.add_argument(
        "--contract", action="append", default=None, metavar="ID",
        help="re-price only these contracts (repeatable; default: all)",
    )  # fmt: skip
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


def cost_text(comparison: Any, shown_as: dict[str, Any] | None = None) -> str:
    """The side-by-side cost table as aligned text (``rule_bench.cost_comparison``)."""
    from effigate_engine.cluster.rule_bench import TENANT

    header = ["tenant_id", "measure", "current", "proposed", "change", "proposed/current"]
    rows = [header]
    for r in comparison.to_pylist():
        show = (SHOWN_AS if shown_as is None else shown_as).get(r["measure"], _count)
        change = show(r["change"])
        rows.append(
            [
                r[TENANT],
                r["measure"],
                show(r["current"]),
                show(r["proposed"]),
                change
                if change.startswith("-") and change.strip("-0.,")
                else f"+{change.lstrip('-')}",
                "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def run_bench_rules(args: argparse.Namespace) -> int:
    """Replay the dataset under both policies and time each rule set (``--billing``: invoice
    its contracts under both terms and time each side)."""
    if args.billing:
        return run_billing(args)
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
    written = _write(args.out, {"replay": bench.replay, "costs": bench.costs})
    left = bench.left_out
    if left.num_rows:
        print(f"\n{left.num_rows} tickets left out of both sides (the engine cannot evaluate them)")
        for message in left.column("message").to_pylist()[:SHOWN]:
            print(f"  {message}")
        if left.num_rows > SHOWN:
            print(f"  … and {left.num_rows - SHOWN} more")
    _wrote(written)
    return 0


def _json_file(option: str, text: str | None) -> Any:
    """The JSON body of the file an option names (``None`` when not given)."""
    import json
    from pathlib import Path

    if text is None:
        return None
    path = Path(text)
    if not path.is_file():
        raise CommandFailure(f"{option} {text!r}: no such file", EXIT_USAGE)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CommandFailure(f"{option} {text!r}: not JSON ({exc})", EXIT_USAGE) from None
    if not isinstance(body, dict):
        raise CommandFailure(f"{option} {text!r}: not a JSON object", EXIT_USAGE)
    return body


def money_text(table: Any) -> str:
    """The per-client table with money in major units of each row's currency."""
    from effigate_engine.money import currency
    from effigate_server.tables import format_table

    rows = table.to_pylist()
    for r in rows:
        code = currency(r["currency"])
        for key in ("current", "proposed", "change"):
            text = code.format(r[key])
            r[key] = text if key != "change" or text.startswith("-") else f"+{text}"
    import pyarrow as pa

    return format_table(pa.Table.from_pylist(rows)) if rows else "no invoices"


def run_billing(args: argparse.Namespace) -> int:
    """Invoice the dataset's contracts under the current and the proposed terms, print the
    money per client and the cost of each side."""
    from datetime import date

    from effigate_engine.cluster.billing_bench import MEASURES, Proposal, bench_billing
    from effigate_engine.cluster.rule_bench import cost_comparison
    from effigate_engine.money import currency

    if args.repeat < 1:
        raise CommandFailure(f"--repeat {args.repeat}: not a positive number", EXIT_USAGE)
    if not args.day:
        raise CommandFailure("bench-rules --billing: give --period YYYY-MM-DD", EXIT_USAGE)
    try:
        day = date.fromisoformat(args.day)
    except ValueError:
        raise CommandFailure(
            f"--period {args.day!r}: not a date (YYYY-MM-DD, e.g. 2026-03-31)", EXIT_USAGE
        ) from None
    proposal = Proposal(
        card=_json_file("--proposed-card", args.proposed_card),
        terms=_json_file("--proposed-terms", args.proposed_terms),
        contracts=frozenset(args.contract) if args.contract else None,
        current_card=_json_file("--current-card", args.current_card),
    )
    if proposal.card is None and proposal.terms is None:
        raise CommandFailure(
            "bench-rules --billing: give --proposed-card and/or --proposed-terms", EXIT_USAGE
        )
    bench = bench_billing(str(args.dataset), day, proposal, repeat=args.repeat)
    print(f"bench-rules --billing {args.dataset} for the periods holding {day.isoformat()}")
    current = args.current_card or "each contract's own card and terms"
    changes = [f"card {args.proposed_card}"] if args.proposed_card else []
    changes += [f"terms {args.proposed_terms}"] if args.proposed_terms else []
    print(f"current: {current}; proposed: {' and '.join(changes)}")
    for tenant, n in bench.changed.items():
        print(f"tenant {tenant}: {n} contracts re-priced")
    print("\nmoney per client (invoice totals; change = proposed - current):")
    print(money_text(bench.by_client))
    sums: dict[str, list[int]] = {}
    for r in bench.by_client.to_pylist():
        pair = sums.setdefault(r["currency"], [0, 0])
        pair[0] += r["current"]
        pair[1] += r["proposed"]
    for code, (a, b) in sorted(sums.items()):
        money = currency(code)
        print(
            f"all clients {code}: current {money.format(a)}, proposed {money.format(b)},"
            f" change {money.format(b - a)}"
        )
    print(f"{bench.lines.num_rows} invoice lines change")
    print(f"\npricing cost (classify + billing_run, threads=1, best of {bench.repeat}):")
    print(cost_text(cost_comparison(bench.costs, MEASURES), BILLING_SHOWN_AS))
    tables = {"by_client": bench.by_client, "totals": bench.totals, "lines": bench.lines}
    _wrote(
        _write(
            args.out,
            {**{f"billing_{k}": v for k, v in tables.items()}, "billing_costs": bench.costs},
        )
    )
    return 0


BILLING_SHOWN_AS = {
    m: _ms for m in ("first_run_ms", "book_ms", "classify_ms", "assemble_ms", "run_ms")
}


def _write(out: str | None, tables: dict[str, Any]) -> list[str]:
    """Write ``tables`` as ``<out>/<name>.parquet`` (nothing without ``--out``)."""
    from effigate_engine.datasets import layout

    if not out:
        return []
    fs, root = layout.filesystem(out)
    fs.makedirs(root, exist_ok=True)
    paths = []
    for name, table in tables.items():
        layout.write_table(out, f"{root.rstrip('/')}/{name}.parquet", table)
        paths.append(f"{out.rstrip('/')}/{name}.parquet")
    return paths


def _wrote(paths: list[str]) -> None:
    if paths:
        print(f"\nwrote {', '.join(paths)}")
