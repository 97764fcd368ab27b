"""Render a benchmark report (bench/results/*.json) as the Markdown tables in bench/README.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _span(stat: dict[str, float], unit: str = "s", scale: float = 1.0, digits: int = 2) -> str:
    low, mid, high = (f"{stat[k] * scale:.{digits}f}" for k in ("min", "median", "max"))
    return f"{mid} {unit} ({low}..{high})"


def markdown(report: dict[str, Any]) -> str:
    out: list[str] = []
    if "throughput" in report:
        for size, rows in report["throughput"].items():
            out += [
                f"#### Apply {size} migrations, then a no-op run and `status`",
                "",
                "| tool | apply | × floor | no-op run | × floor | status | × floor |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for name, row in rows.items():
                if "missing" in row:
                    out.append(f"| {name} | {row['missing']} | | | | | |")
                    continue
                cells = []
                for key in ("apply", "noop", "status"):
                    stat = row.get(key)
                    cells += [_span(stat), f"{stat.get('ratio_to_floor', 1):.1f}"] if stat else ["n/a", ""]
                out.append(f"| {name} | " + " | ".join(cells) + " |")
            out.append("")
    if "lock_safety" in report:
        ls = report["lock_safety"]
        out += [
            f"#### Application latency while a migration waits for a lock held {ls['blocker_holds_s']} s",
            "",
            f"{ls['app_sessions']} application sessions query the table throughout; times are for queries "
            "that started while the migration ran.",
            "",
            "| tool | app max latency | app p99 latency | queries | migration took |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, row in ls.items():
            if not isinstance(row, dict):
                continue
            if "missing" in row:
                out.append(f"| {name} | {row['missing']} | | | |")
                continue
            out.append(
                f"| {name} | {_span(row['max_ms'], 'ms', digits=0)} | {_span(row['p99_ms'], 'ms', digits=0)} | "
                f"{row['queries']['median']:.0f} | {_span(row['migration_s'])} |"
            )
        out.append("")
    if "startup" in report:
        st = report["startup"]
        out += ["#### Start-up", "", "| command | wall time | × `python -c pass` |", "| --- | --- | --- |"]
        for name, row in st["timings"].items():
            out.append(f"| `{name}` | {_span(row, 'ms', 1000, 0)} | {row['ratio_to_floor']:.1f} |")
        out += [
            "",
            "Heavy modules loaded: "
            + "; ".join(f"`{k}`: {', '.join(v) or 'none'}" for k, v in st["heavy_imports"].items()),
            "",
        ]
    if "control_plane" in report:
        cp = report["control_plane"]
        out += [
            f"#### Control plane: a burst of {cp['jobs']} queued jobs, maxRunners {cp['max_runners']}",
            "",
            f"Launched {cp['launched']}, {cp['back_to_queue']} went back to the queue.",
            "",
            "| per launched runner | EC2 calls | GitHub calls | SSM calls | receiver ms/job | scale-up ms/job |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| | {cp['calls_per_runner']['ec2']:.1f} | {cp['calls_per_runner']['github']:.1f} | "
            f"{cp['calls_per_runner']['ssm']:.1f} | {cp['ms_per_job']['receiver']:.1f} | "
            f"{cp['ms_per_job']['scale_up']:.1f} |",
            "",
        ]
    if "boot" in report:
        bt = report["boot"]
        out += [
            "#### Runner boot in simulation: cold and from a baked image",
            "",
            "The real user data under the simulator's stubs with the real kit wheelhouse; downloads are stubbed "
            "(free here), so cold is a floor.",
            "",
            "| boot | install (s) | boot to runner online (s) |",
            "| --- | --- | --- |",
            *(f"| {kind} | {bt[kind]['InstallTime']:.2f} | {bt[kind]['BootTime']:.2f} |" for kind in ("cold", "baked")),
            f"| baked ÷ cold | {bt['baked_to_cold']['InstallTime']:.2f} | {bt['baked_to_cold']['BootTime']:.2f} |",
            "",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
