"""Recipes: one YAML file describing a whole experiment, checked completely before anything is submitted.

    name: demo                         # shown in progress lines and recorded in every run's manifest
    monitor: false                     # true (or a mapping of start options): start a monitor first
    services:                          # started in order, each waited for until ready
      - service: llm-sim
        options: {runtime: none, ttft-ms: 50}
        timeout: 120                   # seconds to wait until ready (default ui.wait_timeout)
    benchmarks:                        # run in order against the services (or ones already running)
      - target: llm-sim
        options: {concurrency: [1, 8], duration: 5}
        repeat: 1
        reference: bands.yaml          # optional: expected values, marked in or out
    report: true                       # write each run's report (HTML when matplotlib is there)
    teardown: true                     # stop what the recipe started, also after a failure or Ctrl-C

Every option goes through the same ``Option`` records as the command line, so ``concurrency: [1, x]`` fails
here with the file, line and key. Resources a site cannot give (more GPUs per node than the profile's nodes
have, a time above the QOS limit) are refused the same way. ``--set services.llm-sim.ttft-ms=100`` (or
``benchmarks.0.options.duration=10``) changes a value before the check; entries are named by their index or
their service/target name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchctl.errors import UserError
from benchctl.options import OptionError
from benchctl.yamlfile import Document, FileError, Key, as_bool, as_int, load, mapping, option_text

if TYPE_CHECKING:
    from benchctl.app import App

TOP = {"name": "the experiment's name", "description": "free text", "monitor": "start a monitor first",
       "services": "services to start", "benchmarks": "benchmarks to run", "report": "write reports",
       "teardown": "stop what was started at the end"}
SERVICE_KEYS = {"service": "the service", "options": "its start options", "timeout": "seconds to wait"}
BENCH_KEYS = {"target": "service or job to benchmark", "options": "bench options", "repeat": "times to run",
              "reference": "reference bands file"}


class RecipeError(UserError):
    """A recipe that cannot run as written (one line: file, line, key, why)."""


@dataclass(frozen=True)
class StartStep:
    service: str
    values: dict[str, Any]  # converted start options (as the parsed command line would hold them)
    timeout: float | None
    where: str


@dataclass(frozen=True)
class BenchStep:
    target: str
    values: dict[str, Any]  # converted bench options
    where: str


@dataclass
class Recipe:
    path: str
    name: str
    document: dict[str, Any]  # after --set: what ran (recorded in manifests, replayed by `run --rerun`)
    sha256: str
    sets: list[str] = field(default_factory=list)
    starts: list[StartStep] = field(default_factory=list)
    benches: list[BenchStep] = field(default_factory=list)
    report: bool = True
    teardown: bool = True

    def context(self) -> dict[str, object]:
        """What a run's manifest records of the recipe."""
        return {"path": self.path, "name": self.name, "sha256": self.sha256, "set": list(self.sets),
                "document": self.document}


def apply_set(doc: Document, assignment: str) -> None:
    """``a.b.0.c=value``: set one value of the document (lists by index or by the entry's service/target)."""
    path, eq, raw = assignment.partition("=")
    parts = [p for p in path.strip().split(".") if p]
    if not eq or not parts:
        raise RecipeError(f"--set {assignment!r}: expected KEY=VALUE, e.g. benchmarks.0.options.duration=10")
    if not isinstance(doc.data, dict):
        raise RecipeError(f"{doc.path}: expected a mapping at the top")
    node: Any = doc.data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            found = next((e for e in node if isinstance(e, dict) and part in (e.get("service"), e.get("target"))),
                         None)
            if found is None and part.isdigit() and int(part) < len(node):
                found = node[int(part)]
            if found is None:
                raise RecipeError(f"--set {path}: no entry {part!r} in {'.'.join(parts[:i]) or 'the recipe'}")
            node = found
            # services.llm-sim.ttft-ms = services.llm-sim.options.ttft-ms: entries' own keys are few
            if i + 1 == len(parts) - 1 and parts[-1] not in (*SERVICE_KEYS, *BENCH_KEYS):
                node = node.setdefault("options", {}) if isinstance(node, dict) else node
        elif isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
        else:
            raise RecipeError(f"--set {path}: {'.'.join(parts[:i])} is a value, not a mapping")
    if not isinstance(node, dict):
        raise RecipeError(f"--set {path}: {'.'.join(parts[:-1])} is not a mapping")
    value = raw.strip()
    node[parts[-1]] = [v.strip() for v in value[1:-1].split(",")] if value.startswith("[") and value.endswith("]") \
        else value


def _convert(doc: Document, key: Key, options: Sequence[Any], raw: dict[str, Any]) -> dict[str, Any]:
    by_dest = {o.dest: o for o in options}
    out: dict[str, Any] = {}
    for name, value in raw.items():
        opt = by_dest.get(name.replace("-", "_"))
        if opt is None:
            import difflib

            close = difflib.get_close_matches(name.replace("_", "-"), [o.flag.lstrip("-") for o in options], n=1)
            raise doc.error((*key, name), "unknown option" + (f" (did you mean {close[0]!r}?)" if close else ""))
        try:
            out[opt.dest] = opt.convert(option_text(value))
        except OptionError as exc:
            raise doc.error((*key, name), str(exc)) from None
    return out


def _check_resources(app: App, doc: Document, key: Key, service: str, values: dict[str, Any]) -> None:
    """Refuse what the site cannot give: more GPUs per node than its nodes have, a time above the QOS limit."""
    from benchctl.services.site import SiteError

    svc = app.service(service)
    try:
        effective = svc.resolve(values)
    except SiteError as exc:
        raise doc.error((*key, "options", "time" if "time" in str(exc) else "qos"), str(exc)) from None
    have = int(app.settings.get("node.gpus") or 0)
    per_node = getattr(svc, "gpus_per_node", None)  # vLLM: --gpus-per-node; others: the GPUs they book
    wanted = int(per_node(effective) if callable(per_node) else effective.get("gpus") or 0)
    if wanted > have:
        raise doc.error((*key, "options", "gpus_per_node" if callable(per_node) else "gpus"),
                        f"{wanted} GPUs per node, but the {app.settings.text('profile')} profile's nodes have {have}")
    for notice in app.service_context().site.take_notices():  # said again at the real start; not here
        del notice


def parse(app: App, path: str, sets: Sequence[str] = (), *, text: str | None = None) -> Recipe:
    """Load, apply ``--set`` and check the whole recipe (RecipeError/FileError: one precise line)."""
    import json

    from benchctl.bench.kind import BenchError
    from benchctl.commands import CommandError
    from benchctl.commands.bench import bench_options, resolve_kind

    doc = load(path, text=text)
    if not isinstance(doc.data, dict):
        raise RecipeError(f"{path}: expected a mapping with services and benchmarks")
    for assignment in sets:
        apply_set(doc, assignment)
    top = mapping(doc, (), doc.data, TOP)
    raw_text = json.dumps(top, sort_keys=True)
    recipe = Recipe(path=str(path), name=str(top.get("name") or path), document=top, sets=list(sets),
                    sha256=hashlib.sha256(raw_text.encode()).hexdigest(),
                    report=as_bool(doc, ("report",), top.get("report"), True),
                    teardown=as_bool(doc, ("teardown",), top.get("teardown"), True))
    entries: list[tuple[Key, dict[str, Any]]] = []
    monitor = top.get("monitor")
    if isinstance(monitor, dict) or as_bool(doc, ("monitor",), monitor if not isinstance(monitor, dict) else None,
                                            False):
        entries.append((("monitor",), {"service": "monitor", "options": monitor if isinstance(monitor, dict) else {}}))
    services = top.get("services") or []
    if not isinstance(services, list):
        raise doc.error(("services",), "expected a list of {service: NAME, options: {...}}")
    entries += [(("services", i), entry) for i, entry in enumerate(services)]
    for key, entry in entries:
        item = mapping(doc, key, entry, SERVICE_KEYS)
        name = item.get("service")
        if not name or app.services.get(str(name)) is None or not app.services[str(name)].startable:
            raise doc.error((*key, "service"), f"unknown service {name!r} (one of "
                            f"{', '.join(c.name for c in app.services if c.startable)})")
        values = _convert(doc, (*key, "options"), app.services[str(name)].start_options(),
                          mapping(doc, (*key, "options"), item.get("options")))
        _check_resources(app, doc, key, str(name), values)
        timeout = as_int(doc, (*key, "timeout"), item.get("timeout"), 0, 0, 86400)
        recipe.starts.append(StartStep(str(name), values, float(timeout) or None, doc.where(key)))
    benchmarks = top.get("benchmarks") or []
    if not isinstance(benchmarks, list):
        raise doc.error(("benchmarks",), "expected a list of {target: NAME, options: {...}}")
    for i, entry in enumerate(benchmarks):
        key = ("benchmarks", i)
        item = mapping(doc, key, entry, BENCH_KEYS)
        target = str(item.get("target") or "")
        try:
            kind, _ = resolve_kind(app, target)
        except CommandError as exc:
            raise doc.error((*key, "target"), str(exc)) from None
        values = _convert(doc, (*key, "options"), bench_options(app, [target]),
                          mapping(doc, (*key, "options"), item.get("options")))
        values["repeat"] = as_int(doc, (*key, "repeat"), item.get("repeat"), int(values.get("repeat") or 1), 1, 100)
        if item.get("reference"):
            values["reference"] = str(item["reference"])
        try:
            kind.config(values)
        except BenchError as exc:
            raise doc.error((*key, "options"), str(exc)) from None
        recipe.benches.append(BenchStep(target, values, doc.where(key)))
    if not recipe.starts and not recipe.benches:
        raise RecipeError(f"{path}: nothing to do (no services, no benchmarks)")
    return recipe


__all__ = ["BenchStep", "FileError", "Recipe", "RecipeError", "StartStep", "apply_set", "parse"]
