"""``python -m bench``: takefive's benchmark suite (see bench/README.md).

python -m bench                     full run (about 15 minutes), writes results + docs
python -m bench --quick             1 s warm-up + 3 s per measurement (about 6 minutes)
python -m bench --only aiohttp,raw-m2
python -m bench list                stacks and whether each can run here
python -m bench handler-only        the ZeroMQ-only figure alone
python -m bench soak --requests 2000000
python -m bench profile --stack takefive-m2-1 --route hello
python -m bench render [RESULTS.json]   regenerate docs/performance.md and .png
python -m bench paired --stacks raw-m2,takefive-m2-1   A B B A windows: median ratio
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import content, suite
from bench.placement import front_end_alone
from bench.procs import REPO
from bench.stackdefs import BASELINE, all_stacks, by_name


def _csv_ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 s warm-up + 3 s per measurement, 50k handler-only messages",
    )
    parser.add_argument(
        "--only",
        metavar="STACK[,STACK]",
        help=f"measure only these stacks (the baseline {BASELINE} is always added)",
    )
    parser.add_argument("--warmup", type=float, help="warm-up seconds per measurement (3)")
    parser.add_argument("--duration", type=float, help="measured seconds per measurement (10)")
    parser.add_argument("--connections", type=_csv_ints, help="connection levels (50,200)")
    parser.add_argument("--routes", help=f"routes to measure ({','.join(content.ROUTES)})")
    parser.add_argument("--messages", type=int, help="handler-only messages (200000)")
    parser.add_argument(
        "--no-jobs", action="store_true", help="skip the jobs round-trip figure (bench_jobs)"
    )
    parser.add_argument(
        "--no-handler-only", action="store_true", help="skip the handler-only figure"
    )
    parser.add_argument(
        "--no-pairs",
        action="store_true",
        help="skip the paired windows (the floor, and each target's lowest cell again)",
    )
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument(
        "--docs",
        dest="docs",
        action="store_true",
        default=None,
        help="regenerate docs/performance.md (default: only for a full run)",
    )
    docs.add_argument("--no-docs", dest="docs", action="store_false")
    parser.add_argument("--note", help="a line to print above the results (e.g. 'loaded machine')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    _add_run_options(parser)
    run = sub.add_parser("run", help="the full measurement (the default command)")
    _add_run_options(run)
    sub.add_parser("list", help="list the stacks and whether they can run here")

    ho = sub.add_parser("handler-only", help="msgs/s through one handler, no HTTP")
    ho.add_argument("--messages", type=int, default=200_000)
    ho.add_argument("--pairs", type=int, default=5, help="runs of each, alternating (5)")

    soak = sub.add_parser("soak", help="a bounded long run that watches RSS")
    soak.add_argument("--requests", type=int, default=2_000_000)
    soak.add_argument("--stack", default="takefive-m2-1")
    soak.add_argument("--route", default="hello", choices=content.ROUTES)
    soak.add_argument("--connections", type=int, default=50)
    soak.add_argument(
        "--time-limit",
        type=float,
        default=600.0,
        help="stop after this many seconds even if --requests is not reached",
    )
    soak.add_argument(
        "--docs",
        action="store_true",
        help="also regenerate docs/performance.md from the latest run",
    )

    prof = sub.add_parser("profile", help="py-spy flame graph of a stack's processes under load")
    prof.add_argument("--stack", default="takefive-m2-1")
    prof.add_argument("--route", default="hello", choices=content.ROUTES)
    prof.add_argument("--connections", type=int, default=50)
    prof.add_argument("--duration", type=float, default=10.0)
    prof.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    prof.add_argument("--format", default="flamegraph", choices=("flamegraph", "speedscope", "raw"))

    paired = sub.add_parser(
        "paired", help="two stacks up at once, measured in turns: median ratio of the pairs"
    )
    paired.add_argument("--stacks", default="raw-m2,takefive-m2-1", help="A,B (B's ratio to A)")
    paired.add_argument("--route", default="hello", choices=content.ROUTES)
    paired.add_argument("--connections", type=int, action="append")
    paired.add_argument("--rounds", type=int, default=5)
    paired.add_argument("--duration", type=float, default=5.0, help="seconds per window")
    paired.add_argument(
        "--pin",
        action="store_true",
        help="the front end alone on one CPU, the handlers and wrk on the others",
    )

    render = sub.add_parser("render", help="regenerate docs/performance.md/.png from a JSON")
    render.add_argument("results", nargs="?", help="a bench/results/*.json (default: latest)")
    return parser


def _settings(args: argparse.Namespace) -> suite.Settings:
    s = suite.Settings(quick=args.quick)
    if args.quick:
        s.warmup_s, s.duration_s = 1.0, 3.0
    if args.warmup is not None:
        s.warmup_s = args.warmup
    if args.duration is not None:
        s.duration_s = args.duration
    if args.connections:
        s.connections = args.connections
    if args.routes:
        routes = tuple(r for r in args.routes.split(",") if r)
        unknown = [r for r in routes if r not in content.ROUTES]
        if unknown:
            raise SystemExit(f"unknown route(s) {unknown}; known: {', '.join(content.ROUTES)}")
        s.routes = routes
    return s


def cmd_run(args: argparse.Namespace) -> int:
    from bench import handler_only

    settings = _settings(args)
    known = by_name()
    stacks = all_stacks()
    if args.only:
        wanted = [n for n in args.only.split(",") if n]
        unknown = [n for n in wanted if n not in known]
        if unknown:
            print(
                f"unknown stack(s): {', '.join(unknown)}; known: {', '.join(known)}",
                file=sys.stderr,
            )
            return 2
        if BASELINE not in wanted:
            wanted.insert(0, BASELINE)
        stacks = [s for s in stacks if s.name in wanted]
    messages = args.messages or (50_000 if args.quick else 200_000)
    ho: dict[str, Any] | Callable[[], dict[str, Any]]
    if args.no_handler_only:
        ho = {"reason": "skipped (--no-handler-only)", "ratio": None}
    else:
        ho = functools.partial(handler_only.measure, messages)

    jobs: dict[str, Any] | Callable[[], dict[str, Any]]
    if args.no_jobs:
        jobs = {"reason": "skipped (--no-jobs)"}
    else:
        from bench import bench_jobs

        jobs = functools.partial(bench_jobs.measure, 50_000 if args.quick else 200_000)

    floor: dict[str, Any] | Callable[[], dict[str, Any]]
    rounds, seconds = (3, 3.0) if args.quick else (5, 5.0)
    # the floor, pinned (bench/placement.py): shorter windows, more of them
    floor_rounds, floor_seconds = (3, 2.0) if args.quick else (8, 2.0)
    measured = {s.name for s in stacks}
    if args.no_pairs:
        floor = {"reason": "skipped (--no-pairs)"}
    elif not {"raw-m2", "takefive-m2-1"} <= measured:
        floor = {"reason": "skipped (raw-m2 and takefive-m2-1 not both measured)"}
    elif (placement := front_end_alone()) is None:
        floor = {"reason": "needs two CPUs: the front end alone on one (bench/placement.py)"}
    else:
        from bench import paired

        floor = functools.partial(
            paired.measure,
            known["raw-m2"],
            known["takefive-m2-1"],
            "hello",
            tuple(settings.connections),
            floor_rounds,
            floor_seconds,
            placement=placement,
        )
    lowest = None if args.no_pairs else functools.partial(_lowest_paired, rounds, seconds)
    pair_estimate = 2 * rounds * seconds + 6
    floor_estimate = len(settings.connections) * (2 * floor_rounds * floor_seconds + 6) + 5
    lowest_estimate = 3 * (pair_estimate + 8)

    estimate = (
        len(stacks) * (settings.stack_seconds() + 3)
        + (0 if args.no_handler_only else 40)
        + (0 if args.no_jobs else 40)
        + (0 if args.no_pairs else floor_estimate + lowest_estimate)
    )
    print(
        f"bench: {len(stacks)} stacks, routes {','.join(settings.routes)}, "
        f"c={','.join(map(str, settings.connections))}, {settings.warmup_s:g} s warm-up + "
        f"{settings.duration_s:g} s each; about {estimate / 60:.0f} min",
        flush=True,
    )
    data = suite.run_suite(
        stacks, settings, handler_only=ho, jobs=jobs, floor_paired=floor, lowest_paired=lowest
    )
    if args.note:
        data["note"] = args.note
    full = not args.quick and not args.only
    docs = args.docs if args.docs is not None else full
    suite.save(data, docs=docs)
    print(f"took {data['seconds']:.0f} s")
    for t in data["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["passed"]]
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        print(f"  target {t['description']}: {value} (threshold {t['threshold']}): {verdict}")
    return 0


def _lowest_paired(rounds: int, seconds: float, data: dict[str, Any]) -> dict[str, Any]:
    """Each stack-vs-stack target's lowest cell, measured again in paired windows."""
    from bench import paired, report

    known = by_name()
    out: dict[str, Any] = {}
    for target_id, (name, other, routes) in report.paired_targets(data).items():
        cell = report.lowest_cell(data, name, other, routes)
        if cell is None:
            out[target_id] = {"reason": "not measured"}
            continue
        route, level, _ = cell
        try:
            out[target_id] = paired.measure(
                known[other], known[name], route, (level,), rounds, seconds
            )
        except Exception as exc:  # a stack that cannot start: reported, the run goes on
            out[target_id] = {"reason": f"{type(exc).__name__}: {exc}"}
    return out


def cmd_list(_: argparse.Namespace) -> int:
    for stack in all_stacks():
        reason = stack.unavailable()
        state = "ready" if reason is None else f"not available: {reason}"
        print(f"{stack.name:18s} {stack.label:32s} {state}")
    return 0


def cmd_handler_only(args: argparse.Namespace) -> int:
    from bench import handler_only

    result = handler_only.measure(args.messages, args.pairs)
    print(json.dumps(result, indent=2))
    return 0 if result.get("ratio") is not None else 1


def cmd_soak(args: argparse.Namespace) -> int:
    from bench import soak

    stack = by_name().get(args.stack)
    if stack is None:
        print(f"unknown stack {args.stack}", file=sys.stderr)
        return 2
    result = soak.run(stack, args.requests, args.route, args.connections, args.time_limit)
    path = soak.save(result)
    print(f"wrote {path.relative_to(REPO)}")
    if args.docs:
        _render(None)
    return 0 if result.get("max_growth") is not None else 1


def cmd_profile(args: argparse.Namespace) -> int:
    from bench import profile

    stack = by_name().get(args.stack)
    if stack is None:
        print(f"unknown stack {args.stack}", file=sys.stderr)
        return 2
    paths = profile.run(stack, args.route, args.connections, args.duration, args.rate, args.format)
    for path in paths:
        print(f"wrote {path}")
    return 0 if paths else 1


def _render(path: str | None) -> int:
    from bench import report

    source = Path(path) if path else suite.latest("*[0-9].json")
    if source is None:
        print("no results in bench/results/ yet: run python -m bench first", file=sys.stderr)
        return 1
    data = json.loads(source.read_text())
    report.compute_ratios(data)
    soak = suite.latest_soak()
    data["targets"] = report.evaluate_targets(data, soak)
    report.write_chart(data, [suite.DOCS_PNG])
    report.write_docs(suite.DOCS_MD, data, soak)
    print(f"rendered {source.name} into docs/performance.md and docs/performance.png")
    return 0


def cmd_paired(args: argparse.Namespace) -> int:
    import json

    from bench import paired

    known = by_name()
    names = [n for n in args.stacks.split(",") if n]
    if len(names) != 2 or any(n not in known for n in names):
        raise SystemExit(f"--stacks takes two of: {', '.join(known)}")
    if args.rounds < 1 or args.duration <= 0:
        raise SystemExit("--rounds must be at least 1 and --duration positive")
    placement = front_end_alone() if args.pin else None
    if args.pin and placement is None:
        raise SystemExit("--pin needs at least two CPUs")
    result = paired.measure(
        known[names[0]],
        known[names[1]],
        args.route,
        tuple(args.connections or (50, 200)),
        args.rounds,
        args.duration,
        placement=placement,
    )
    for level in result["levels"]:
        print(
            f"  {args.route} c={level['connections']}: {names[1]} / {names[0]} median "
            f"{level['median']:.2f}x (pairs {level['min']:.2f}-{level['max']:.2f}x; "
            f"{names[0]} {level['a_rps']}, {names[1]} {level['b_rps']} req/s)",
            flush=True,
        )
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    if command == "run":
        return cmd_run(args)
    if command == "list":
        return cmd_list(args)
    if command == "handler-only":
        return cmd_handler_only(args)
    if command == "soak":
        return cmd_soak(args)
    if command == "profile":
        return cmd_profile(args)
    if command == "paired":
        return cmd_paired(args)
    return _render(args.results)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ModuleNotFoundError as exc:
        sys.exit(f"bench: {exc}. Install the bench extra: .venv/bin/pip install -e '.[bench]'")
