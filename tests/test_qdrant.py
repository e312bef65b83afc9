"""Qdrant: the service (options, batch script, golden files), QdrantStore over the REST API, and a whole job.

The store and the job run against tests/qdrant_server.py, a real HTTP server speaking Qdrant's REST API
over qdrant-client's local engine (no Qdrant server binary can be installed here). Golden files:

    BENCHCTL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py tests/test_qdrant.py
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from benchctl.app import App
from benchctl.bench.vector.stores import STORES, IndexParams, StoreError
from benchctl.bench.vector.stores.qdrant import QdrantStore
from benchctl.executors.base import ExecutorError
from benchctl.executors.local import sbatch_options
from benchctl.options import Option, OptionError
from benchctl.services import SERVICES, load_images
from benchctl.services.options import job_env_name
from benchctl.services.qdrant import Qdrant
from benchctl.slurm.states import JobState
from benchctl.templates import Renderer, TemplateError
from tests.conftest import REPO
from tests.fakes import FakeSlurm
from tests.qdrant_server import VERSION, QdrantTestServer, running
from tests.test_templates import BASH, HOST_BIN_DIR, RUNTIMES, bash_syntax_ok, service_for

RUN_DIR = Path("/home/u/benchctl/jobs/qdrant-X")
# Pinned here (not read from sif/images.yaml) so the golden files change only when the template does.
IMAGE = "docker://qdrant/qdrant:v1.19.1"
KEY_VAR = "BENCHCTL_TEST_QDRANT_KEY"
SECRET = "qd-s3cret-4f9a1c77e2b0"
# The golden scripts: apptainer with an API key, none without.
GOLDEN_OPTIONS: dict[str, dict[str, Any]] = {"apptainer": {"api_key_env": "QDRANT_API_KEY"}, "none": {}}


def make_service(tmp_path: Path, runtime: str, host_bin_dir: str = HOST_BIN_DIR) -> Qdrant:
    service = service_for("qdrant", tmp_path, runtime, {"qdrant": IMAGE}, host_bin_dir)
    assert isinstance(service, Qdrant)
    return service


def render(tmp_path: Path, runtime: str, options: dict[str, Any] | None = None) -> str:
    service = make_service(tmp_path, runtime)
    values = service.resolve(options or {})
    assert values["runtime"] == runtime
    return service.render(values, RUN_DIR)


def script_line(script: str, prefix: str) -> str:
    return next(line for line in script.splitlines() if line.startswith(prefix))


# ---- golden files and the script's shape ------------------------------------------------------------


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("options", [{}, {"api_key_env": "K"}, {"port": 6333, "grpc_port": 6334},
                                     {"data_dir": "/tmp/it's $(id) `id`"}], ids=["default", "key", "ports", "dir"])
def test_rendered_script_passes_bash_n(tmp_path: Path, runtime: str, options: dict[str, Any]) -> None:
    script = render(tmp_path, runtime, options)
    assert script.startswith("#!/bin/bash -l\n")
    ok, err = bash_syntax_ok(script)
    assert ok, err


def test_images_yaml_pins_the_tag_the_golden_files_use() -> None:
    assert load_images()["qdrant"] == IMAGE


def test_registered() -> None:
    assert SERVICES["qdrant"] is Qdrant
    assert STORES["qdrant"] is QdrantStore
    assert (Renderer().directory / Qdrant.template).is_file()
    assert Qdrant.health_path == "/readyz"
    assert {o.flag for o in Qdrant.start_options()} >= {"--port", "--grpc-port", "--api-key-env", "--data-dir"}


@pytest.mark.usefixtures("fixed_env")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_sbatch_header(tmp_path: Path, runtime: str) -> None:
    opts = sbatch_options(render(tmp_path, runtime))
    assert opts["job-name"] == "benchctl-qdrant"
    assert opts["cpus-per-task"] == "4"
    assert opts["output"] == str(RUN_DIR / "slurm-%j.out")
    assert opts["signal"] == "B:USR1@120"
    assert "gres" not in opts


@pytest.mark.usefixtures("fixed_env")
def test_apptainer_script_runs_the_image_binary(tmp_path: Path) -> None:
    script = render(tmp_path, "apptainer")
    assert "SIF=/project/scratch/p200981/u/benchctl/sif/qdrant_v1.19.1.sif" in script
    assert f"apptainer pull --disable-cache \"$SIF.$SLURM_JOB_ID.tmp\" {IMAGE}" in script
    assert "for dir in /project/scratch/p200981/u/benchctl/qdrant/qdrant-X /project /mnt/tier1 /mnt/tier2; do" in script
    assert 'apptainer exec "${BINDS[@]}" "$SIF" /qdrant/qdrant &\n' in script
    assert HOST_BIN_DIR not in script


@pytest.mark.usefixtures("fixed_env")
def test_none_script_runs_qdrant_from_path(tmp_path: Path) -> None:
    script = render(tmp_path, "none")
    assert f'export PATH={HOST_BIN_DIR}:"$PATH"' in script
    assert "apptainer" not in script
    assert "\nqdrant &\n" in script
    assert "DATA_DIR=/home/u/benchctl/scratch/benchctl/qdrant/qdrant-X\n" in script


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_qdrant_is_configured_through_its_environment_from_a_writable_dir(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime)
    for line in ('export QDRANT__STORAGE__STORAGE_PATH="$DATA_DIR/storage"',
                 'export QDRANT__STORAGE__SNAPSHOTS_PATH="$DATA_DIR/snapshots"',
                 f"export QDRANT__SERVICE__HOST={'127.0.0.1' if runtime == 'none' else '0.0.0.0'}",
                 'export QDRANT__SERVICE__HTTP_PORT="$PORT"',
                 'export QDRANT__SERVICE__GRPC_PORT="$GRPC_PORT"', "export QDRANT__TELEMETRY_DISABLED=true",
                 'mkdir -p "$DATA_DIR/storage" "$DATA_DIR/snapshots"'):
        assert f"\n{line}\n" in script, line
    # config paths are relative to the working directory: cd before the service starts
    cd = script.index('cd "$DATA_DIR" || exit 1')
    service = script.index("qdrant &\n")
    assert cd < service
    assert script.index("QDRANT__SERVICE__HTTP_PORT") < service
    assert "_bc_http_ok /readyz" in script


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_fixed_ports(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime, {"port": 6333, "grpc_port": 6334})
    assert "\nPORT=6333\n" in script
    assert "\nGRPC_PORT=6334\n" in script
    assert "RANDOM" not in script


def test_default_ports_are_picked_free_and_distinct(tmp_path: Path) -> None:
    script = render(tmp_path, "none")
    assert "RANDOM" in script
    assert '[ "$candidate" = "$PORT" ] && continue' in script  # gRPC never takes the REST port
    assert Qdrant.default_port == 0


def test_same_rest_and_grpc_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="--grpc-port 7000 is also the REST port"):
        render(tmp_path, "none", {"port": 7000, "grpc_port": 7000})


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_marker_is_printed(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime)
    for marker in ("JOBID", "SERVICE", "HOST", "NODE", "IP", "PORT", "GRPC_PORT", "DATA_DIR", "PID", "READY",
                   "STOPPING", "STOPPED", "EXITED"):
        assert f"BENCHCTL_{marker}=" in script, marker


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_hostile_data_dir_assignment_evaluates_to_the_value(tmp_path: Path) -> None:
    value = f"{tmp_path}/x; touch {tmp_path}/pwned; $(touch {tmp_path}/pwned2)"
    script = render(tmp_path, "none", {"data_dir": value})
    assert shlex.quote(value) in script
    line = script_line(script, "DATA_DIR=")
    assert BASH is not None
    res = subprocess.run([BASH, "-c", f'{line}\nprintf %s "$DATA_DIR"'], capture_output=True, text=True, timeout=10)
    assert res.stdout == value
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


# ---- the API key: a variable's name in the script, never its value -------------------------------------


def key_option() -> Option:
    [opt] = [o for o in Qdrant.start_options() if o.flag == "--api-key-env"]
    assert opt.parse is job_env_name
    return opt


@pytest.mark.parametrize("name", ["QDRANT_API_KEY", "_key", "k2", "A"])
def test_api_key_env_accepts_variable_names(name: str) -> None:
    assert key_option().convert(name) == name
    assert key_option().convert(f"  {name} ") == name


@pytest.mark.parametrize("value", ["1KEY", "MY-KEY", "MY KEY", "$(id)", "KEY;id", "${HOME}", "$KEY", "KEY}",
                                   "KEY:-x", "ключ", "a'b", "SLURM_KEY", "SBATCH_KEY"])
def test_api_key_env_rejects_anything_but_a_usable_name(value: str) -> None:
    with pytest.raises(OptionError, match="--api-key-env"):
        key_option().convert(value)


def test_api_key_env_rejects_an_empty_value() -> None:
    with pytest.raises(OptionError, match="--api-key-env: empty value"):
        key_option().convert("  ")


def test_api_key_env_error_says_to_pass_the_name() -> None:
    with pytest.raises(OptionError, match="not its value"):
        key_option().convert("sk-123-abc")


def test_template_rechecks_a_name_that_bypassed_the_option(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not an environment variable name"):
        render(tmp_path, "none", {"api_key_env": 'X}"; id; echo "'})


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_script_names_the_variable_and_never_holds_the_key(tmp_path: Path, runtime: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, SECRET)
    script = render(tmp_path, runtime, {"api_key_env": KEY_VAR})
    assert SECRET not in script
    line = script_line(script, "export QDRANT__SERVICE__API_KEY=")
    assert line.startswith(f'export QDRANT__SERVICE__API_KEY="${{{KEY_VAR}:?')
    assert script.index(line) < script.index("qdrant &\n")
    assert "unset QDRANT__SERVICE__API_KEY" not in script


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_without_a_key_an_inherited_qdrant_key_is_dropped(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime, {"no_auth": True})
    assert "\nunset QDRANT__SERVICE__API_KEY\n" in script
    assert "QDRANT__SERVICE__API_KEY=" not in script


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_by_default_the_job_gets_a_key_of_its_own_from_its_environment(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime)
    assert 'export QDRANT__SERVICE__API_KEY="$BENCHCTL_API_KEY"' in script
    assert ': "${BENCHCTL_API_KEY:?' in script  # no key in the environment: the job fails loudly


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_key_line_reads_the_variable_at_run_time_and_fails_clearly_without_it(tmp_path: Path) -> None:
    line = script_line(render(tmp_path, "none", {"api_key_env": KEY_VAR}), "export QDRANT__SERVICE__API_KEY=")
    assert BASH is not None
    program = f'{line}\nprintf %s "$QDRANT__SERVICE__API_KEY"'
    base_env = {k: v for k, v in os.environ.items() if k != KEY_VAR}
    ok = subprocess.run([BASH, "-c", program], capture_output=True, text=True, timeout=10,
                        env={**base_env, KEY_VAR: SECRET})
    assert (ok.returncode, ok.stdout) == (0, SECRET)
    missing = subprocess.run([BASH, "-c", program], capture_output=True, text=True, timeout=10, env=base_env)
    assert missing.returncode != 0 and missing.stdout == ""
    assert f"{KEY_VAR} is not set in the job environment" in missing.stderr


def test_submit_refuses_when_the_variable_is_not_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_VAR, raising=False)
    service = make_service(tmp_path, "none")
    with pytest.raises(ExecutorError, match=f"--api-key-env {KEY_VAR}: \\${KEY_VAR} is not set"):
        service.submit(service.resolve({"api_key_env": KEY_VAR}))
    assert service.ctx.jobs.all() == []


# ---- through the command line (fake Slurm) ------------------------------------------------------------


def output(app: App) -> str:
    return str(app.out.getvalue())  # type: ignore[attr-defined]


def test_start_dry_run_with_a_key_prints_no_secret(app: App, fake_slurm: FakeSlurm,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, SECRET)
    assert app.run_line(f"start qdrant --dry-run --api-key-env {KEY_VAR} --port 6333")
    out = output(app)
    assert "${" + KEY_VAR + ":?" in out
    assert "PORT=6333" in out
    assert SECRET not in out
    assert not [c for c in fake_slurm.calls if c[0] == "sbatch"]


def test_start_submits_a_script_without_the_secret(app: App, fake_slurm: FakeSlurm,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, SECRET)
    assert app.run_line(f"start qdrant --api-key-env {KEY_VAR}")
    [job] = app.jobs.all()
    assert job.service == "qdrant"
    script = Path(job.script_path).read_text()
    assert f"${{{KEY_VAR}:?" in script
    assert SECRET not in script
    assert SECRET not in Path(job.run_dir, "job.json").read_text()
    assert SECRET not in output(app)


@pytest.mark.parametrize("value", ["'KEY;id'", "1KEY", "sk-123-abc"])
def test_start_rejects_a_bad_variable_name(app: App, fake_slurm: FakeSlurm, value: str) -> None:
    assert app.run_line(f"start qdrant --api-key-env {value}") is False
    assert "--api-key-env: expected the name of an environment variable" in " ".join(output(app).split())
    assert app.jobs.all() == []


def test_start_without_the_variable_set_submits_nothing(app: App, fake_slurm: FakeSlurm,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_VAR, raising=False)
    assert app.run_line(f"start qdrant --api-key-env {KEY_VAR}") is False
    assert f"${KEY_VAR} is not set" in " ".join(output(app).split())
    assert not [c for c in fake_slurm.calls if c[0] == "sbatch"]


def test_recipe_api_key_env_is_validated_too(app: App, fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    recipe = tmp_path / "q.yaml"
    recipe.write_text("service: qdrant\noptions:\n  api-key-env: \"$(id)\"\n")
    assert app.run_line(f"start qdrant --dry-run --recipe {recipe}") is False
    assert "--api-key-env" in output(app)


# ---- QdrantStore against the test server ----------------------------------------------------------------


@pytest.fixture
def qdrant() -> Iterator[QdrantTestServer]:
    with running() as server:
        yield server


@pytest.fixture
def qdrant_with_key() -> Iterator[QdrantTestServer]:
    with running(api_key=SECRET) as server:
        yield server


def brute_force(data: np.ndarray, query: np.ndarray, metric: str, k: int) -> list[int]:
    if metric == "l2":
        order = np.argsort(((data - query) ** 2).sum(axis=1), kind="stable")
    elif metric == "cosine":
        order = np.argsort(-(data @ query) / (np.linalg.norm(data, axis=1) * np.linalg.norm(query)), kind="stable")
    else:
        order = np.argsort(-(data @ query), kind="stable")
    return [int(i) for i in order[:k]]


def vectors(n: int, dim: int, metric: str, seed: int = 7) -> np.ndarray:
    data = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    if metric == "ip":  # unit vectors: a stored vector is its own best inner-product match
        data /= np.linalg.norm(data, axis=1, keepdims=True)
    return data


def bodies(server: QdrantTestServer, method: str, suffix: str) -> list[dict[str, Any]]:
    return [r for r in server.requests if r["method"] == method and r["path"].endswith(suffix)]


@pytest.mark.parametrize(("metric", "distance"), [("l2", "Euclid"), ("cosine", "Cosine"), ("ip", "Dot")])
def test_store_round_trip(qdrant: QdrantTestServer, metric: str, distance: str) -> None:
    store = QdrantStore(qdrant.url)
    s = store.session()
    data = vectors(1000, 16, metric)
    params = IndexParams(metric=metric, m=8, ef_construct=64, ef_search=40)
    store.create(s, "bench", 16, params)
    for start in range(0, 1000, 250):  # float32 arrays, as the benchmark sends them
        store.insert(s, "bench", range(start, start + 250), data[start:start + 250])
    assert store.count(s, "bench") == 1000
    for i in (0, 417, 999):
        got = store.search(s, "bench", data[i], 10)
        assert got[0] == i  # a stored vector finds itself first
        assert got == brute_force(data, data[i], metric, 10)
    query = np.random.default_rng(99).normal(size=16).astype(np.float32)
    assert store.search(s, "bench", query, 5) == brute_force(data, query, metric, 5)

    # what went over the wire: Qdrant's request shapes
    create = bodies(qdrant, "PUT", "/collections/bench")
    assert create[-1]["body"] == {"vectors": {"size": 16, "distance": distance},
                                  "hnsw_config": {"m": 8, "ef_construct": 64}}
    upserts = bodies(qdrant, "PUT", "/collections/bench/points")
    assert len(upserts) == 4 and all(r["query"] == "wait=true" for r in upserts)
    assert upserts[0]["body"]["points"][1] == {"id": 1, "vector": pytest.approx(data[1].tolist())}
    assert bodies(qdrant, "POST", "/points/count")[-1]["body"] == {"exact": True}
    query_body = bodies(qdrant, "POST", "/points/query")[-1]["body"]
    assert query_body == {"query": pytest.approx(query.tolist()), "limit": 5, "params": {"hnsw_ef": 40},
                          "with_payload": False}

    store.drop(s, "bench")
    with pytest.raises(StoreError, match=r"HTTP 404: Not found: Collection `bench` doesn't exist!"):
        store.count(s, "bench")


def test_plain_lists_and_strided_float64_arrays_are_accepted(qdrant: QdrantTestServer) -> None:
    store = QdrantStore(qdrant.url)
    s = store.session()
    store.create(s, "v", 2, IndexParams())
    store.insert(s, "v", [1, 2], [[0.0, 1.0], [1.0, 0.0]])  # lists, as a user script might pass
    wide = np.array([[0.0, 9.0, 0.5, 9.0], [0.25, 9.0, 0.25, 9.0]])  # float64, every other column: not contiguous
    store.insert(s, "v", np.array([3, 4]), wide[:, ::2])
    assert store.count(s, "v") == 4
    assert store.search(s, "v", [0.0, 0.6], 1) == [3]
    assert store.search(s, "v", wide[1, ::2], 2)[0] == 4
    assert bodies(qdrant, "PUT", "/points")[-1]["body"]["points"] == [{"id": 3, "vector": [0.0, 0.5]},
                                                                      {"id": 4, "vector": [0.25, 0.25]}]


def test_create_replaces_an_existing_collection(qdrant: QdrantTestServer) -> None:
    store = QdrantStore(qdrant.url)
    s = store.session()
    store.create(s, "c", 4, IndexParams())
    store.insert(s, "c", [1, 2], [[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    store.create(s, "c", 3, IndexParams())  # dropped first: no 409, and empty
    assert store.count(s, "c") == 0
    assert [r["method"] for r in qdrant.requests if r["path"] == "/collections/c"] == ["DELETE", "PUT", "DELETE",
                                                                                      "PUT"]


def test_search_uses_default_ef_for_a_collection_it_did_not_create(qdrant: QdrantTestServer) -> None:
    QdrantStore(qdrant.url).create(requests.Session(), "other", 2, IndexParams(ef_search=7))
    store = QdrantStore(qdrant.url)  # a fresh instance (another process): knows nothing of ef_search=7
    s = store.session()
    store.insert(s, "other", [5], [[1.0, 1.0]])
    assert store.search(s, "other", [1.0, 1.0], 3) == [5]
    assert bodies(qdrant, "POST", "/points/query")[-1]["body"]["params"] == {"hnsw_ef": IndexParams().ef_search}


def test_drop_of_a_missing_collection_is_fine(qdrant: QdrantTestServer) -> None:
    store = QdrantStore(qdrant.url)
    store.drop(store.session(), "never-created")
    assert bodies(qdrant, "DELETE", "/collections/never-created")


def test_errors_carry_qdrants_message(qdrant: QdrantTestServer) -> None:
    store = QdrantStore(qdrant.url)
    s = store.session()
    with pytest.raises(StoreError, match=r"^PUT /collections/nope/points\?wait=true: HTTP 404: Not found"):
        store.insert(s, "nope", [1], [[1.0]])
    store.create(s, "d", 3, IndexParams())
    with pytest.raises(StoreError, match=r"HTTP 400: Wrong input: Vector dimension error: expected dim: 3, got 2"):
        store.insert(s, "d", [1], [[1.0, 2.0]])
    with pytest.raises(StoreError, match="2 ids for 1 vectors"):
        store.insert(s, "d", [1, 2], [[1.0, 2.0, 3.0]])
    with pytest.raises(StoreError, match="unknown metric 'hamming'"):
        store.create(s, "d", 3, IndexParams(metric="hamming"))


def test_collection_names_are_escaped_in_the_path(qdrant: QdrantTestServer) -> None:
    store = QdrantStore(qdrant.url)
    s = store.session()
    store.create(s, "a b", 2, IndexParams())
    store.insert(s, "a b", [3], [[0.5, 0.5]])
    assert store.count(s, "a b") == 1
    assert bodies(qdrant, "PUT", "/collections/a%20b")


def test_version_and_unreachable_server(qdrant: QdrantTestServer) -> None:
    store = QdrantStore(qdrant.url)
    assert store.version(store.session()) == VERSION
    with socket_closed() as url:
        dead = QdrantStore(url, timeout=2)
        assert dead.version(dead.session()) == ""
        with pytest.raises(StoreError, match=r"^DELETE /collections/x: ConnectionError"):
            dead.create(dead.session(), "x", 2, IndexParams())


@contextmanager
def socket_closed() -> Iterator[str]:
    """A URL nothing listens on (a server's port, after the server closed it)."""
    server = QdrantTestServer()
    url = server.url
    server.stop()
    yield url


def test_api_key_required_when_configured(qdrant_with_key: QdrantTestServer) -> None:
    anonymous = QdrantStore(qdrant_with_key.url)
    with pytest.raises(StoreError, match=r"HTTP 401: the server requires an API key and none was sent.*"
                                         r"Must provide an API key"):
        anonymous.create(anonymous.session(), "k", 2, IndexParams())
    wrong = QdrantStore(qdrant_with_key.url, api_key="not-the-key")
    with pytest.raises(StoreError, match=r"HTTP 401: the server rejected the API key that was sent"):
        wrong.count(wrong.session(), "k")
    # /readyz and / need no key (Qdrant's whitelist): readiness probes and version() work without one
    assert requests.get(qdrant_with_key.url + "/readyz", timeout=5).status_code == 200
    assert anonymous.version(anonymous.session()) == VERSION

    for store in (QdrantStore(qdrant_with_key.url, api_key=SECRET),
                  STORES["qdrant"](qdrant_with_key.url, headers={"api-key": SECRET})):  # as `bench` builds it
        s = store.session()
        store.create(s, "k", 2, IndexParams())
        store.insert(s, "k", [1, 2], [[0.0, 1.0], [1.0, 0.0]])
        assert store.count(s, "k") == 2
        assert store.search(s, "k", [0.9, 0.1], 1) == [2]
    sent = [r["headers"].get("api-key") for r in qdrant_with_key.requests if r["path"].startswith("/collections")]
    assert sent[:2] == [None, "not-the-key"] and set(sent[2:]) == {SECRET}


def test_stores_registry_holds_both_apis_whatever_is_imported_first() -> None:
    for first in ("benchctl.bench.vector.stores.qdrant", "benchctl.bench.vector.stores.base"):
        code = (f"import {first}\nfrom benchctl.bench.vector.stores import STORES\n"
                "print(sorted(STORES.names()), STORES['qdrant'].__name__)")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["['chroma',", "'qdrant']", "QdrantStore"]


# ---- a whole job: the real batch script, the local executor, the server as `qdrant` on PATH ---------------


@pytest.fixture
def qdrant_on_path(tmp_path: Path) -> Path:
    """A bin dir whose `qdrant` is tests/qdrant_server.py (it reads Qdrant's QDRANT__* settings)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "qdrant"
    server = REPO / "tests" / "qdrant_server.py"
    exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(server))} "$@"\n')
    exe.chmod(0o755)
    return bin_dir


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_job_serves_qdrant_with_an_api_key(tmp_path: Path, qdrant_on_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, SECRET)
    service = make_service(tmp_path, "none", host_bin_dir=str(qdrant_on_path))
    job = service.submit(service.resolve({"api_key_env": KEY_VAR, "time": "5"}))
    try:
        job = service.wait_ready(job, timeout=30)
        assert job.state is JobState.RUNNING and job.ready
        endpoint = service.endpoint(job)
        assert endpoint is not None
        info = service.log_info(job)
        assert info.markers["API_KEY_ENV"] == KEY_VAR
        assert int(info.markers["GRPC_PORT"]) != job.port
        # the script's own readiness loop (GET /readyz, no key needed) prints READY too
        deadline = time.monotonic() + 15
        while "READY" not in service.log_info(job).markers and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "READY" in service.log_info(job).markers

        anonymous = QdrantStore(endpoint.url)
        with pytest.raises(StoreError, match="HTTP 401"):
            anonymous.count(anonymous.session(), "j")
        store = QdrantStore(endpoint.url, api_key=SECRET)
        s = store.session()
        store.create(s, "j", 3, IndexParams())
        store.insert(s, "j", [10, 11], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        assert store.count(s, "j") == 2
        assert store.search(s, "j", [0.0, 0.9, 0.1], 2) == [11, 10]

        # the server ran from the data dir, with storage under it, as the script configured
        data_dir = Path(info.markers["DATA_DIR"])
        out = Path(job.out_path).read_text()
        assert f"cwd {data_dir}, storage {data_dir / 'storage'}, api key on" in out
        assert (data_dir / "storage").is_dir() and (data_dir / "snapshots").is_dir()
        assert SECRET not in Path(job.script_path).read_text()
    finally:
        job = service.stop(job, grace=10, poll=0.2)
    assert job.state.is_final
    assert "STOPPED" in service.log_info(job).markers
    assert "qdrant-test-server stopped" in Path(job.out_path).read_text()


def test_same_bench_command_runs_against_qdrants_rest_api(app: App, qdrant: QdrantTestServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench vector --store qdrant` drives the whole benchmark over Qdrant's REST routes."""
    out_file = Path(os.environ["BENCHCTL_HOME"]) / "qdrant-run.json"
    line = (f"bench vector --url {qdrant.url} --store qdrant --n 1500 --dim 16 --queries 30 "
            f"--concurrency 1,2 --duration 1 --output {out_file}")
    assert app.run_line(line), app.out.getvalue()  # type: ignore[attr-defined]
    run = json.loads(out_file.read_text())
    assert run["service"] == {"name": "qdrant", "endpoint": qdrant.url}
    assert run["metrics"]["ingest"]["count"] == 1500
    assert run["metrics"]["serial"]["recall@10"] == 1.0  # the test server's engine searches exactly
    assert [p["concurrency"] for p in run["points"]] == [1, 2]
    assert all(p["requests"] > 0 and p["errors"] == 0 for p in run["points"])
    out = app.out.getvalue()  # type: ignore[attr-defined]
    assert "ingest: 1500 vectors" in out and "recall@10" in out
