"""`medseg monitor report`: SLO windows with confidence intervals, burn rates, drift and alerts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from medseg.app.cli.common import ConfigOpt, number, open_context, output_file, wide

monitor_app = typer.Typer(no_args_is_help=True, help="Quality monitoring: SLOs, drift, alerts, report.")


def _ci(e: dict) -> str:
    if e["value"] is None:
        return "-"
    if e["low"] is None:
        return f"{e['value']:.3f} (n={e['n']})"
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}] n={e['n']}"


@monitor_app.command()
def report(model: Optional[str] = typer.Option(None, help="NAME:VERSION (default: every version with data)"),
           since: Optional[str] = typer.Option(None, help="period of the plot and 'period' numbers: 7d, 24h, yesterday, 2026-11-01"),
           png: Optional[Path] = typer.Option(None, "--png", help="also write the plot (PNG) to this file"),
           fmt: str = typer.Option("table", "--format", help="table | json"),
           config: Optional[Path] = ConfigOpt) -> None:
    """SLO windows with confidence intervals, burn rates, drift and alerts; with --png, a plot.

    Nothing is written unless asked: the plot goes only where --png says (it used to land in the
    current directory even with --format json)."""
    from medseg.core.exceptions import MedsegError
    from medseg.quality.report import model_ref, parse_since, plot, summary

    output_file(png, "--png")
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise MedsegError(str(exc), code="monitor.invalid_since") from None
    ctx = open_context(config, reading=True)
    monitor = ctx.monitor
    data = summary(monitor, model_ref(model), start)
    if model and not data["models"]:
        name, _, version = model_ref(model).partition("/")
        if version not in ctx.registry.versions(name):
            raise MedsegError(f"no model {name}/{version} in the model store, and no reviews of it",
                              code="monitor.unknown_model")
    if png is not None:
        plot(data, png)
    if fmt == "json":
        print(json.dumps(data, indent=1))
        return
    table = Table(title="Review quality per model version (long window)")
    for col in ("model", "reviews", "Dice mean [CI]", "FN rate [CI]", "lesion sens. [CI]", "sens. >=10 mm [CI]"):
        table.add_column(col)
    slos = Table(title="SLOs")
    for col in ("model", "SLO", "objective", "value", "burn long/short", "state"):
        slos.add_column(col)
    for m in data["models"]:
        w = m["window"]
        table.add_row(m["model"], str(w["reviews"]), _ci(w["dice_mean"]), _ci(w["fn_rate_mean"]),
                      _ci(w["lesion_sensitivity"]), _ci(w["lesion_sensitivity_ge10"]))
        for s in m["slos"]:
            sign = ">=" if s["direction"] == "min" else "<="
            slos.add_row(m["model"], s["slo"], f"{s['metric']} {sign} {s['objective']}", _ci(s["long"]),
                         f"{number(s['burn_long'], 2)} / {number(s['burn_short'], 2)}",
                         "[red]BREACHED[/red]" if s["breached"] else "ok")
    wide.print(table)
    wide.print(slos)
    drifted = [(m["model"], d) for m in data["models"] for d in m["drift"] if d["drifted"]]
    wide.print(f"drift: {len(drifted)} monitor(s) drifting" + "".join(
        f"\n  {name}: {d['monitor']} {d['statistic']} {d['value']} (threshold {d['threshold']})" for name, d in drifted))
    wide.print(f"alerts firing: {len(data['alerts_firing'])}" + "".join(
        f"\n  #{a['id']} {a['kind']} {a['name']} {a['model']}: {a['action'] or a['evidence'].get('why', '')}"
        for a in data["alerts_firing"]))
    wide.print(f"unmatched corrected SEGs: {data['unmatched_reviews']}")
    if png is not None:
        wide.print(f"plot: {png}")
