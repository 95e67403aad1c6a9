"""``reward-service``: serve, score a JSONL file, list tasks, run workers, export prompt statistics."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter, defaultdict
from typing import Iterator

from reward_service.config import Settings
from reward_service.models import Item, Result

BATCH = 256  # items per request/progress step when scoring a file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reward-service", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the HTTP API (embedded worker pool unless REDIS_URL is set)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, help="scoring worker processes (default: one per core)")

    sc = sub.add_parser("score", help="score a JSONL file of items, in-process or against --url")
    sc.add_argument("input", help="JSONL, one item per line ('-' for stdin)")
    sc.add_argument("-o", "--output", help="write one result per line here (JSONL)")
    sc.add_argument("--url", help="score against this running service instead of in-process")
    sc.add_argument("--api-key", help="bearer key for --url (default: REWARD_SERVICE_API_KEY)")
    sc.add_argument("--workers", type=int)

    pr = sub.add_parser("prompts", help="per-prompt pass rates")
    prs = pr.add_subparsers(dest="prompts_cmd", required=True)
    ex = prs.add_parser("export", help="write every prompt's statistics as JSONL (from Redis when REDIS_URL is set, "
                                       "else from REWARD_SERVICE_PROMPT_STATS_FILE, or from a running service with --url)")
    ex.add_argument("output", help="JSONL file to write ('-' for stdout)")
    ex.add_argument("--url", help="export from this running service (GET /prompts)")
    ex.add_argument("--api-key", help="bearer key for --url (default: REWARD_SERVICE_API_KEY)")

    sub.add_parser("tasks", help="list task types")
    sub.add_parser("config", help="print the configuration table (Markdown)")

    w = sub.add_parser("worker", help="run RQ workers for distributed scoring (needs REDIS_URL)")
    w.add_argument("--count", type=int, default=1, help="worker processes on this host")
    w.add_argument("--queues", default="", help="comma-separated task families to serve (default: all)")
    w.add_argument("--metrics-port", type=int, default=None, help="serve worker metrics for Prometheus here")

    args = p.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in ("host", "port", "workers") and v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return {"serve": _serve, "score": _score, "tasks": _tasks, "config": _config, "worker": _worker,
            "prompts": _prompts}[args.cmd](args, settings)


def _serve(args, settings: Settings) -> int:
    import uvicorn

    from reward_service.api import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=5)
    return 0


def _read_items(path: str) -> list[Item]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    items = []
    with stream:
        for n, line in enumerate(stream, 1):
            if line.strip():
                try:
                    items.append(Item.model_validate_json(line))
                except ValueError as e:
                    raise SystemExit(f"{path}:{n}: not a valid item: {e}") from None
    return items


def _batches(items: list[Item]) -> Iterator[list[Item]]:
    for i in range(0, len(items), BATCH):
        yield items[i:i + BATCH]


async def _score_local(items: list[Item], settings: Settings, progress) -> list[Result]:
    import verifiers
    from reward_service.api import check_sandbox, make_executor
    from reward_service.prompt_stats import make_prompt_stats
    from reward_service.result_cache import make_cache
    from reward_service.scoring import Scorer

    verifiers.load_all()
    check_sandbox(settings)
    ex = make_executor(settings)
    await ex.start()
    scorer = Scorer(ex, settings, make_cache(settings), make_prompt_stats(settings))
    try:
        out: list[Result] = []
        for chunk in _batches(items):
            out += (await scorer.score(chunk)).results
            progress(len(chunk))
        return out
    finally:
        await scorer.close()
        await ex.stop()


def _score_remote(items: list[Item], url: str, api_key: str | None, progress) -> list[Result]:
    from reward_service.client import RewardClient

    out: list[Result] = []
    with RewardClient(url, api_key=api_key) as client:
        for chunk in _batches(items):
            out += client.score(chunk)
            progress(len(chunk))
    return out


def _score(args, settings: Settings) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    items = _read_items(args.input)
    console = Console(stderr=True)
    t0 = time.perf_counter()
    with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("score", total=len(items))
        advance = lambda n: bar.advance(task, n)  # noqa: E731
        if args.url:
            key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
            results = _score_remote(items, args.url, key, advance)
        else:
            results = asyncio.run(_score_local(items, settings, advance))
    elapsed = time.perf_counter() - t0

    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            for r in results:
                f.write(r.model_dump_json() + "\n")

    table = Table(title=f"{len(results)} items in {elapsed:.1f} s ({len(results) / max(elapsed, 1e-9):.0f}/s)")
    statuses = ["ok", "timeout", "error", "invalid"]
    for col in ["task", "items", "mean reward", *statuses]:
        table.add_column(col, justify="left" if col == "task" else "right")
    by_task: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_task[r.task].append(r)
    for name, rs in sorted(by_task.items()):
        counts = Counter(r.status for r in rs)
        table.add_row(name, str(len(rs)), f"{sum(r.reward for r in rs) / len(rs):.3f}", *(str(counts[s]) for s in statuses))
    console.print(table)
    return 0


def _prompts(args, settings: Settings) -> int:
    lines = _prompt_lines(args, settings)
    if args.output == "-":
        sys.stdout.writelines(lines)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.writelines(lines)
        print(f"{len(lines)} prompts written to {args.output}", file=sys.stderr)
    return 0


def _prompt_lines(args, settings: Settings) -> list[str]:
    if args.url:
        import httpx

        key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.get(args.url.rstrip("/") + "/prompts", headers=headers, timeout=300)
        if r.status_code != 200:
            raise SystemExit(f"GET {args.url}/prompts -> {r.status_code}: {r.text[:500]}")
        return [line + "\n" for line in r.text.splitlines() if line.strip()]
    if not settings.redis_url and not settings.prompt_stats_file:
        raise SystemExit("nothing to export from: set REDIS_URL (distributed mode), REWARD_SERVICE_PROMPT_STATS_FILE "
                         "(the embedded service's file), or give --url of a running service")
    from reward_service.executors.base import BackendUnavailable
    from reward_service.prompt_stats import make_prompt_stats

    async def export() -> list[str]:
        store = make_prompt_stats(settings)
        try:
            return [s.model_dump_json() + "\n" for s in await store.export()]
        finally:
            if settings.redis_url:
                await store.close()  # the file store's close would rewrite the file it just read

    try:
        return asyncio.run(export())
    except BackendUnavailable as e:
        raise SystemExit(str(e)) from None


def _tasks(args, settings: Settings) -> int:
    import verifiers

    for spec in verifiers.load_all().values():
        print(f"{spec.name:10} {spec.description} (version {spec.version})")
        print(f"{'':10} ground truth: {' | '.join(spec.ground_truth)}")
    return 0


def _config(args, settings: Settings) -> int:
    print("| variable | default | meaning |\n|---|---|---|")
    for name, field in Settings.model_fields.items():
        default = "one per core" if name == "workers" else ("unset" if field.default is None else json.dumps(field.default) if field.default_factory is None else "{}")
        print(f"| `REWARD_SERVICE_{name.upper()}` | {default} | {field.description} |")
    return 0


def _worker(args, settings: Settings) -> int:
    from reward_service.worker import run_workers

    return run_workers(settings, count=args.count, queues=[q for q in args.queues.split(",") if q],
                       metrics_port=args.metrics_port)


if __name__ == "__main__":
    sys.exit(main())
