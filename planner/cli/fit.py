"""``plan calibrate``: fit the step model's named parameters to published measurements."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from planner.cli import main


# ---------------------------------------------------------------- calibrate
@main.command()
@click.option("--data", type=click.Path(dir_okay=False, exists=True), multiple=True,
              help="Calibration CSV(s) (default: the built-in calibration.csv and calibration_*.csv).")
@click.option("--family", "families", multiple=True, metavar="NAME",
              help="Fit only these families (h100, b200, cs3, groq-lpu); repeatable. Default: all.")
@click.option("--no-cv", is_flag=True, help="Skip the held-out (leave-one-out / k-fold) refits: in-sample only.")
@click.option("--write", is_flag=True, help="Write the fitted values and uncertainty bands into the hardware YAML files.")
@click.option("--markdown", type=click.Path(dir_okay=False), help="Also write the per-point table as Markdown.")
@click.option("-j", "--jobs", type=click.IntRange(min=1),
              help="Worker processes for the fits (default: all cores); the report is the same whatever the number.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def calibrate(data, families, no_cv, write, markdown, jobs, quiet):
    """Fit the named step-time parameters to published measurements; report per-point, per-group
    and overall errors, in sample and held out (points a fit did not see)."""
    from planner import calibration as cal
    known = [f.head for f in cal.FAMILIES]
    bad = [f for f in families if f not in known]
    if bad:
        raise click.BadParameter(f"unknown family {bad[0]!r} (known: {', '.join(known)})", param_hint="--family")
    pts = cal.read_points([Path(d) for d in data] if data else None)
    chosen = [f for f in cal.FAMILIES if not families or f.head in families]
    from planner.sweeps.interrupt import exit_code, sigterm_as_interrupt
    from planner.pool import worker_count
    from planner.sweeps.progress import Progress
    with sigterm_as_interrupt():
        try:
            fits = cal.fit(pts, chosen, cross_validate=not no_cv, jobs=worker_count(jobs),
                           progress=lambda n: Progress(n, quiet, unit="fit"))
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the workers are ended, nothing was written
            click.echo("\ninterrupted: nothing written", err=True)
            sys.exit(exit_code(e))
    for g in fits:
        click.echo(f"\n{g.family.head} (fits {', '.join(g.family.members)}): {g.calibrate_points} calibrate points, "
                   f"{len(g.params)} parameters, {g.dof} degrees of freedom; held out by {g.cv}")
        for name, (a, b) in g.params.items():
            click.echo(f"  {name:28s} {a:.4g} -> {b:.4g}")
        click.echo(f"  {'file:row':>22} {'role':9} {'hardware':11} {'model':17} {'metric':22} {'batch':>5} "
                   f"{'measured':>10} {'predicted':>10} {'error':>7} {'held out':>8}")
        for x in g.predictions:
            c = x.cells()
            click.echo(f"  {c['ref']:>22} {c['role']:9} {c['hardware']:11} {c['model']:17} {c['metric']:22} "
                       f"{c['batch']:>5} {c['measured']:>10} {c['predicted']:>10} {c['error']:>7} {c['held_out']:>8}")
    click.echo("\nsummary (|error|: in sample over calibrate rows; held out over cross-validated calibrate rows "
               "and validate rows)")
    for r in cal.summary(fits):
        click.echo(f"  {r['group']:9s} {r['families']:28s} params {r['parameters']:2d}  calibrate {r['calibrate_points']:3d} "
                   f"in-sample median {r['in_sample_median']:.1%}  held-out {r['held_out_points']:3d} points "
                   f"({r['models']} models) median {r['held_out_median']:.1%} max {r['held_out_max']:.0%}")
    ref = [p for p in pts if not p.evaluable and (not families or (cal.family_of(p.hardware) and
                                                                   cal.family_of(p.hardware).head in families))]
    click.echo(f"\n{len(ref)} reference rows (shown in the CSV, not predicted)")
    if markdown:
        from planner.sweeps.export import atomic_write_text
        atomic_write_text(Path(markdown), cal.markdown(fits))
        click.echo(f"wrote {markdown}")
    if write:
        from planner import catalog
        installed = catalog.hardware_dir().name == "_hardware_specs"  # the wheel's copy, not a checkout's
        written = cal.write_back(fits)
        for f in written:
            click.echo(f"wrote {f}")
        if installed and any(Path(f).parent == catalog.hardware_dir() for f in written):
            click.echo("note: these files are the installed package's copy of the catalog; reinstalling planner "
                       "replaces it. To keep a fit, copy the spec files into ./hardware_specs/ where you run "
                       "plan (the catalog reads that folder before its own) and run --write there.", err=True)


