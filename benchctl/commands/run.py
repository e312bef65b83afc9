"""``run RECIPE [--set KEY=VALUE ...] [--dry-run]`` and ``run --rerun RUN_ID``: a whole experiment, step by step.

The recipe is checked completely first (``benchctl.recipe``): nothing is submitted when any part is wrong.
Then each step runs through the same command handlers a user would type (``start``, ``check --wait``,
``bench``, ``report``, ``stop``), so a recipe's run is the same run, with the same output, files and manifest
(which records the recipe as run). What the recipe started is stopped at the end -- also when a step fails or
the user presses Ctrl-C -- unless it says ``teardown: false``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from benchctl.commands import Command, CommandError, ParsedArgs, Registry
from benchctl.errors import UserError
from benchctl.options import Complete, Option, text

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.jobs import Job
    from benchctl.recipe import Recipe


def call(app: App, name: str, positionals: Sequence[str], opts: Mapping[str, Any]) -> None:
    """Run command ``name`` with already converted options, as if typed (its own defaults apply)."""
    command = app.registry.lookup(name)
    if command is None:
        raise CommandError(f"the {name!r} command is not available")
    parsed = ParsedArgs(list(positionals), {k: v for k, v in opts.items() if v is not None})
    for opt in command.options:
        if opt.default is not None:
            parsed.opts.setdefault(opt.dest, opt.default)
    command.handler(app, parsed)


def plan_lines(recipe: Recipe) -> list[str]:
    """The steps a recipe will take, one line each (``--dry-run`` prints them)."""
    def shown(values: Mapping[str, Any]) -> str:
        return " ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                        if v is not True else f"--{k.replace('_', '-')}" for k, v in values.items()
                        if v not in (None, False, "") and not (k == "repeat" and v == 1))

    lines = [f"start {s.service} {shown(s.values)}".rstrip() + "; check --wait" for s in recipe.starts]
    lines += [f"bench {b.target} {shown(b.values)}".rstrip() + ("; report --html" if recipe.report else "")
              for b in recipe.benches]
    if recipe.teardown and recipe.starts:
        lines.append("stop " + ", ".join(s.service for s in recipe.starts))
    return lines


def execute(app: App, recipe: Recipe) -> list[str]:
    """Run the recipe's steps; returns the run ids written. Stops what it started (teardown) in any case."""
    started: list[Job] = []
    runs: list[str] = []
    total = len(recipe.starts) + len(recipe.benches)
    step = 0
    app.recipe_context = recipe.context()
    try:
        for start in recipe.starts:
            step += 1
            app.ui.info(f"[{step}/{total}] {recipe.name}: start {start.service}")
            before = {j.id for j in app.jobs.all()}
            _step(app, recipe, step, "start", [start.service], start.values)
            new = [j for j in app.jobs.all() if j.id not in before and j.service == start.service]
            if not new:
                raise CommandError(f"recipe {recipe.name}: step {step}: {start.service} was not submitted")
            started.append(new[-1])
            _step(app, recipe, step, "check", [new[-1].id], {"wait": True, "timeout": start.timeout})
        mine = {job.service: job.id for job in started}
        for bench in recipe.benches:
            step += 1
            app.ui.info(f"[{step}/{total}] {recipe.name}: bench {bench.target}")
            values = dict(bench.values)
            if bench.target in mine and not values.get("job"):
                values["job"] = mine[bench.target]  # the job this recipe started, not another of the service
            app.last_run_id = ""
            app.current_line = f"bench {bench.target} (recipe {recipe.name}, step {step})"
            _step(app, recipe, step, "bench", [bench.target], values)
            if app.last_run_id:
                runs.append(app.last_run_id)
                if recipe.report and app.registry.lookup("report") is not None:
                    try:
                        call(app, "report", [app.last_run_id], {"html": True})
                    except UserError as exc:  # a report is a view of the run: never the run's failure
                        app.ui.warn(f"report {app.last_run_id}: {exc}")
    finally:
        app.recipe_context = None
        if recipe.teardown:
            teardown(app, started)
    app.ui.success(f"recipe {recipe.name}: {len(recipe.starts)} service(s), {len(runs)} run(s)"
                   + (f": {', '.join(runs)}" if runs else ""))
    pages = [page for run in runs if (page := app.home / "results" / run / "report" / "report.html").is_file()]
    for page in pages:  # last, so the page to open is what the user sees at the end
        app.ui.info(f"report: {page}")
    return runs


def _step(app: App, recipe: Recipe, step: int, name: str, positionals: list[str], opts: Mapping[str, Any]) -> None:
    try:
        call(app, name, positionals, opts)
    except UserError as exc:
        raise CommandError(f"recipe {recipe.name}: step {step} ({name} {' '.join(positionals)}) failed: {exc}") \
            from None


def teardown(app: App, jobs: Sequence[Job]) -> None:
    """Stop the jobs in reverse order; each failure is said, none stops the others."""
    for job in reversed(jobs):
        try:
            call(app, "stop", [job.id], {"yes": True})
        except (UserError, OSError) as exc:
            app.ui.warn(f"teardown: {job.label}: {exc} ('stop {job.id}' to retry)")
        except KeyboardInterrupt:
            app.ui.warn(f"teardown interrupted: {job.label} may still run ('stop {job.id}')")


def rerun_document(app: App, run_id: str) -> tuple[str, dict[str, Any]]:
    """A recipe that repeats run ``run_id``: its recipe as run, else one built from its manifest (the service
    started with the same start options, the same bench options, then stopped)."""
    from benchctl.commands.results import load_run, newest_first

    run = load_run(app, run_id, newest_first(app.home / "results"))
    manifest = run.extra.get("manifest")
    if not isinstance(manifest, dict):
        raise CommandError(f"run {run.run_id} has no manifest (made by an older benchctl): it cannot be rerun")
    recipe = manifest.get("invocation", {}).get("recipe")
    if isinstance(recipe, dict) and isinstance(recipe.get("document"), dict):
        return f"{recipe.get('path', 'recipe')} (rerun of {run.run_id})", dict(recipe["document"])
    bench = manifest.get("bench") or {}
    options = {k: v for k, v in (bench.get("options") or {}).items() if k not in ("job", "output")}
    document: dict[str, Any] = {"name": f"rerun of {run.run_id}", "benchmarks": [{"target": bench.get("target"),
                                                                                    "options": options}]}
    service = manifest.get("service")
    if isinstance(service, dict) and service.get("service"):
        cls = app.services.get(str(service["service"]))
        dests = {o.dest for o in cls.start_options()} if cls is not None else set()
        start = {k: v for k, v in (service.get("start_options") or {}).items() if k in dests and v not in ("", None)}
        document["services"] = [{"service": service["service"], "options": start}]
        document["benchmarks"][0]["target"] = service["service"]
    return f"rerun of {run.run_id}", document


def cmd_run(app: App, args: ParsedArgs) -> None:
    """Run a recipe: check all of it, start its services (waiting until ready), run its benchmarks, write their
    reports, stop what it started (also after a failure or Ctrl-C). --rerun RUN_ID repeats a run from its
    manifest."""
    import yaml

    from benchctl.recipe import parse

    if args.get("rerun"):
        if args.positionals:
            raise CommandError("run: give a RECIPE or --rerun RUN_ID, not both")
        where, document = rerun_document(app, args.get("rerun"))
        recipe = parse(app, where, args.get("set") or [], text=yaml.safe_dump(document, sort_keys=False))
    elif args.positionals:
        recipe = parse(app, args.positionals[0], args.get("set") or [])
    else:
        raise CommandError("run: missing RECIPE (or --rerun RUN_ID); usage: run RECIPE [--set KEY=VALUE] [--dry-run]")
    if args.get("dry_run"):
        app.ui.info(f"recipe {recipe.name}: checked; {len(recipe.starts) + len(recipe.benches)} step(s):")
        for line in plan_lines(recipe):
            app.ui.text(f"  {line}")
        app.ui.info("(dry run: nothing submitted)")
        return
    execute(app, recipe)


def register(registry: Registry) -> None:
    registry.add(Command("run", cmd_run, "run RECIPE [--set KEY=VALUE ...] [--dry-run] | run --rerun RUN_ID",
                         "run a recipe (YAML): start, wait, bench, report, stop", (Complete.PATH,),
                         (Option("--set", "change one recipe value, e.g. benchmarks.0.options.duration=10 or "
                                 "services.llm-sim.ttft-ms=100 (repeatable)", text, metavar="KEY=VALUE",
                                 repeatable=True),
                          Option("--dry-run", "check the recipe and print its steps; submit nothing", None),
                          Option("--rerun", "repeat this run from its manifest", text, metavar="RUN_ID",
                                 complete=Complete.RUN))))


__all__ = ["call", "cmd_run", "execute", "plan_lines", "register", "rerun_document", "teardown"]
