"""vLLM: options, the batch script (one node and Ray multi-node), golden files, secrets and quoting.

Golden files:

    BENCHCTL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_vllm.py
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from benchctl.executors.local import sbatch_options
from benchctl.options import OptionError
from benchctl.services import SERVICES
from benchctl.services.vllm import Vllm, split_extra_args
from benchctl.templates import Renderer, TemplateError
from tests.fakes import FakeSlurm
from tests.test_templates import BASH, HOST_BIN_DIR, RUNTIMES, bash_syntax_ok, service_for

RUN_DIR = Path("/home/u/benchctl/jobs/vllm-X")
# Pinned here (not read from sif/images.yaml) so the golden files change only when the template does.
IMAGES = {"vllm": "docker://vllm/vllm-openai:v0.10.1.1"}
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
VENV = "/opt/vllm-cpu-venv"
TOKEN_VAR = "BENCHCTL_TEST_HF_TOKEN"
SECRET = "hf_s3cretT0kenValue9f2a"
API = "python3 -m vllm.entrypoints.openai.api_server"


def golden_options(nodes: int, runtime: str) -> dict[str, Any]:
    opts: dict[str, Any] = {"model": MODEL, "nodes": nodes}
    if runtime == "none":
        opts["venv"] = VENV
    return opts


def make_service(tmp_path: Path, runtime: str) -> Vllm:
    return service_for("vllm", tmp_path, runtime, IMAGES)  # type: ignore[no-any-return]


def render(tmp_path: Path, runtime: str, options: dict[str, Any]) -> str:
    service = make_service(tmp_path, runtime)
    values = service.resolve(options)
    assert values["runtime"] == runtime
    return service.render(values, RUN_DIR)


def api_line(script: str) -> str:
    """The API server's line (rank 0, in the batch step): not the headless ranks started with srun."""
    return next(line for line in script.splitlines() if API in line and "srun " not in line)


# ---- golden files --------------------------------------------------------------------------------


# ---- declaration and header ----------------------------------------------------------------------


def test_declaration() -> None:
    assert Vllm.name == "vllm" and Vllm.uses_gpu and Vllm.health_path == "/health"
    assert Vllm.bench_kind == "llm" and Vllm.ready_timeout >= 1800
    assert (Renderer().directory / Vllm.template).is_file()
    flags = {o.flag for o in Vllm.start_options()}
    assert flags >= {"--model", "--nodes", "--gpus-per-node", "--tp", "--pp", "--max-model-len", "--extra-args",
                     "--venv", "--hf-token-env", "--port", "--cpus", "--runtime"}
    assert len(flags) == len(Vllm.start_options())  # no clash with the common options


@pytest.mark.usefixtures("fixed_env")
@pytest.mark.parametrize("nodes", [1, 3])
def test_sbatch_header(tmp_path: Path, nodes: int) -> None:
    opts = sbatch_options(render(tmp_path, "apptainer", {"model": MODEL, "nodes": nodes}))
    assert opts["partition"] == "gpu"
    assert opts["nodes"] == str(nodes)
    assert opts["ntasks-per-node"] == "1"
    assert opts["cpus-per-task"] == "128"  # the meluxina profile: the whole node (32 threads per GPU x 4 GPUs)
    assert opts["gres"] == "gpu:4"
    opts = sbatch_options(render(tmp_path, "apptainer", {"model": MODEL, "gpus_per_node": 2, "cpus": 8}))
    assert (opts["gres"], opts["cpus-per-task"]) == ("gpu:2", "8")


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_common_environment(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime, {"model": MODEL})
    assert "\nexport PMIX_MCA_psec=native\n" in script
    assert 'export HF_HOME="$HF_CACHE"' in script
    hf_cache = re.search(r"^HF_CACHE=(.*)$", script, re.M)
    assert hf_cache and shlex.split(hf_cache[1])[0].endswith("/benchctl/hf-cache")
    assert f'echo "BENCHCTL_MODEL="{MODEL}' in script
    assert "_bc_http_ok /health" in script
    assert script.index("HF_HOME") < script.index(API)


@pytest.mark.usefixtures("fixed_env")
def test_apptainer_binds_the_cache_and_uses_nv(tmp_path: Path) -> None:
    script = render(tmp_path, "apptainer", {"model": MODEL})
    assert "for dir in /project/scratch/p200981/u/benchctl/hf-cache /project" in script
    assert f'apptainer exec --nv "${{BINDS[@]}}" "$SIF" {API} ' in script
    assert "SIF=/project/scratch/p200981/u/benchctl/sif/vllm-openai_v0.10.1.1.sif" in script


def test_cpu_only_has_no_gres_and_tp_1(tmp_path: Path) -> None:
    script = render(tmp_path, "none", {"model": MODEL, "gpus_per_node": 0, "venv": VENV})
    assert "gres" not in sbatch_options(script)
    assert "--tensor-parallel-size 1 " in api_line(script)
    assert "apptainer" not in script


def test_venv_is_put_first_on_path(tmp_path: Path) -> None:
    script = render(tmp_path, "none", {"model": MODEL, "venv": VENV})
    assert f"export VIRTUAL_ENV={VENV}\n" in script
    assert script.index(f'export PATH={HOST_BIN_DIR}:"$PATH"') < script.index('export PATH="$VIRTUAL_ENV/bin:$PATH"')
    assert api_line(script).startswith(API)


def test_venv_is_refused_with_apptainer(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="--venv applies to --runtime none only"):
        render(tmp_path, "apptainer", {"model": MODEL, "venv": VENV})


# ---- the model: required, one clear line -----------------------------------------------------------


def test_missing_model_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="vllm needs --model M"):
        render(tmp_path, "none", {})


def output(app: Any) -> str:
    return str(app.out.getvalue())


@pytest.fixture
def vllm_app(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An App over the fake Slurm with vllm registered and its image pinned (until the registry has both)."""
    monkeypatch.setitem(SERVICES, "vllm", Vllm)
    monkeypatch.setattr("benchctl.services.load_images", lambda path=None: dict(IMAGES))
    return make_app()


def test_start_without_model_says_so_in_one_line(vllm_app: Any, fake_slurm: FakeSlurm) -> None:
    assert vllm_app.run_line("start vllm") is False
    lines = [line for line in output(vllm_app).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "vllm needs --model M" in lines[0]
    assert not [c for c in fake_slurm.calls if c[0] == "sbatch"]
    assert vllm_app.jobs.all() == []


def test_start_dry_run_through_the_command_line(vllm_app: Any, fake_slurm: FakeSlurm) -> None:
    assert vllm_app.run_line(f"start vllm --dry-run --model {MODEL} --nodes 2 --tp 2 --max-model-len 4096")
    out = " ".join(output(vllm_app).split())
    assert '--tensor-parallel-size 2 --pipeline-parallel-size 2 --nnodes "$NNODES" --node-rank 0' in out
    assert vllm_app.run_line(f"start vllm --dry-run --model {MODEL} --nodes 2 --tp 2 --backend ray")
    out = " ".join(output(vllm_app).split())
    assert "--distributed-executor-backend ray --tensor-parallel-size 2 --pipeline-parallel-size 2" in out
    assert "--max-model-len 4096" in out
    assert not [c for c in fake_slurm.calls if c[0] == "sbatch"]


def test_start_submits(vllm_app: Any, fake_slurm: FakeSlurm) -> None:
    assert vllm_app.run_line(f"start vllm --model {MODEL}"), output(vllm_app)
    [job] = vllm_app.jobs.all()
    assert job.service == "vllm"
    assert f"--model {MODEL}" in Path(job.script_path).read_text()


# ---- TP / PP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "tp", "pp"), [
    ({}, 4, None),
    ({"gpus_per_node": 2}, 2, None),
    ({"tp": 2}, 2, None),
    ({"tp": 2, "pp": 2}, 2, 2),
    ({"nodes": 2}, 4, 2),
    ({"nodes": 3, "gpus_per_node": 2}, 2, 3),
    ({"nodes": 2, "tp": 2, "pp": 4}, 2, 4),
])
def test_tp_pp_defaults_and_overrides(tmp_path: Path, options: dict[str, Any], tp: int, pp: int | None) -> None:
    line = api_line(render(tmp_path, "apptainer", {"model": MODEL, **options}))
    assert f" --tensor-parallel-size {tp}" in line
    if pp is None:
        assert "--pipeline-parallel-size" not in line
    else:
        assert f" --pipeline-parallel-size {pp}" in line


def test_more_parallelism_than_gpus_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="needs 16 GPUs, but the job has 2 node"):
        render(tmp_path, "apptainer", {"model": MODEL, "nodes": 2, "tp": 4, "pp": 4})


@pytest.mark.parametrize(("flag", "value"), [("--nodes", "0"), ("--tp", "0"), ("--pp", "0"), ("--tp", True)])
def test_zero_sizes_are_refused(flag: str, value: Any) -> None:
    """Refused by the option when the line (or a recipe) is parsed, before anything is rendered."""
    [opt] = [o for o in Vllm.start_options() if o.flag == flag]
    with pytest.raises(OptionError, match=flag):
        opt.convert(value)


def test_max_model_len(tmp_path: Path) -> None:
    assert " --max-model-len 8192" in api_line(render(tmp_path, "none", {"model": MODEL, "max_model_len": 8192}))
    assert "--max-model-len" not in api_line(render(tmp_path, "none", {"model": MODEL}))


# ---- --extra-args: word by word, quoted, inert ---------------------------------------------------------


def test_extra_args_are_quoted_word_by_word(tmp_path: Path) -> None:
    line = api_line(render(tmp_path, "apptainer", {"model": MODEL, "extra_args": "--enforce-eager --dtype bfloat16"}))
    assert line.endswith(" --enforce-eager --dtype bfloat16 &")
    words = shlex.split(line)
    assert words[-4:] == ["--enforce-eager", "--dtype", "bfloat16", "&"]


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_hostile_extra_args_stay_inert(tmp_path: Path, runtime: str) -> None:
    hostile = "--served-model-name '$(id)' \"`id`; rm -rf ~\" a|b"
    script = render(tmp_path, runtime, {"model": "x; $(id)", "nodes": 2, "extra_args": hostile})
    ok, err = bash_syntax_ok(script)
    assert ok, err
    line = api_line(script)
    assert " --served-model-name '$(id)' '`id`; rm -rf ~' 'a|b' &" in line
    assert "--model 'x; $(id)'" in line
    # what bash would pass: exactly the words the user wrote
    words = shlex.split(line)
    assert words[-5:-1] == ["--served-model-name", "$(id)", "`id`; rm -rf ~", "a|b"]


@pytest.mark.parametrize("text", ["--port 9000", "--host=127.0.0.1", "-tp 8", "--model other", "--max-model-len 9"])
def test_extra_args_cannot_override_managed_flags(text: str) -> None:
    with pytest.raises(TemplateError, match="is set by benchctl"):
        split_extra_args(text)


def test_extra_args_with_an_open_quote_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="--extra-args: cannot split"):
        render(tmp_path, "none", {"model": MODEL, "extra_args": "--dtype 'bfloat16"})


# ---- the Hugging Face token: a variable's name, never its value -----------------------------------------


@pytest.mark.parametrize("nodes", [1, 2])
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_token_value_never_in_the_script(tmp_path: Path, runtime: str, nodes: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv(TOKEN_VAR, SECRET)
    for opts in ({}, {"hf_token_env": TOKEN_VAR}):
        script = render(tmp_path, runtime, {"model": MODEL, "nodes": nodes, **opts})
        assert SECRET not in script
    assert f'export HF_TOKEN="${{{TOKEN_VAR}}}"' in script
    assert 'export APPTAINERENV_HF_TOKEN="$HF_TOKEN"' in script
    assert f'if [ -n "${{{TOKEN_VAR}:-}}" ]; then' in script


def test_token_default_is_hf_token(tmp_path: Path) -> None:
    script = render(tmp_path, "none", {"model": MODEL})
    assert 'export HF_TOKEN="${HF_TOKEN}"' in script
    assert "BENCHCTL_HF_TOKEN_ENV=HF_TOKEN" in script


def test_start_with_the_token_set_writes_no_secret(vllm_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert vllm_app.run_line(f"start vllm --model {MODEL} --nodes 2")
    [job] = vllm_app.jobs.all()
    assert SECRET not in Path(job.script_path).read_text()
    assert SECRET not in Path(job.run_dir, "job.json").read_text()
    assert SECRET not in output(vllm_app)


@pytest.mark.parametrize("value", ["1TOKEN", "$(id)", "TOK;id", "SLURM_TOKEN", "hf_abc-123"])
def test_start_rejects_a_bad_token_variable_name(vllm_app: Any, value: str) -> None:
    assert vllm_app.run_line(f"start vllm --model {MODEL} --hf-token-env {shlex.quote(value)}") is False
    assert "--hf-token-env" in output(vllm_app)
    assert vllm_app.jobs.all() == []


def test_template_rechecks_a_token_name_that_bypassed_the_option(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not an environment variable name"):
        render(tmp_path, "none", {"model": MODEL, "hf_token_env": 'X}"; id; echo "'})


# ---- multi-node structure ------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_multi_node_structure_ray(tmp_path: Path, runtime: str) -> None:
    script = render(tmp_path, runtime, {"model": MODEL, "nodes": 2, "backend": "ray",
                                        **({"venv": VENV} if runtime == "none" else {})})
    lines = script.splitlines()
    assert 'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")' in lines
    assert "NNODES=${SLURM_NNODES:-2}" in lines and "HEAD=${NODES[0]}" in lines
    [head] = [line for line in lines if line.startswith("srun -J ray-head ")]
    # a quarter of the node's CPUs (apptainer: MeluXina's 128 -> 32; none: the local profile's 32 -> 8): the API
    # server in the batch step needs the rest
    assert ' -N1 -n1 -w "$HEAD" ' in head and (" -c 32 " in head if runtime == "apptainer" else " -c 8 " in head)
    assert 'ray start --block --head --port="$RAY_PORT" --node-ip-address="$HEAD_IP"' in head
    assert head.endswith(" &")
    # one worker step per other node, each told its own address (vLLM does not pass VLLM_HOST_IP to Ray workers)
    [workers] = [line.strip() for line in lines if "srun -J ray-workers " in line]
    assert workers.startswith('VLLM_HOST_IP="$ip" RAY_NODE_IP_ADDRESS="$ip" srun -J ray-workers -N1 -n1 -w "$node" ')
    assert 'ray start --block --address="$HEAD_IP:$RAY_PORT" --node-ip-address="$ip"' in workers
    assert 'for node in "${NODES[@]:1:$((NNODES - 1))}"; do' in lines
    # the ray status loop is bounded and comes between the workers and the API server
    status = next(i for i, line in enumerate(lines) if "ray status" in line)
    worker_at = next(i for i, line in enumerate(lines) if "srun -J ray-workers " in line)
    assert lines.index(head) < worker_at < status < lines.index(api_line(script))
    assert "deadline=$(( SECONDS + 600 ))" in lines
    assert 'echo "BENCHCTL_RAY_NODES=${RAY_NODES:-0}"' in lines
    sleeps = [line.strip() for i, line in enumerate(lines) if lines.index(head) < i < lines.index(api_line(script))
              and line.strip().startswith("sleep")]
    assert sleeps == ["sleep 2"]  # no fixed sleep: only the poll's
    api = api_line(script)
    assert "--distributed-executor-backend ray --tensor-parallel-size 4 --pipeline-parallel-size 2" in api
    assert "--nnodes" not in api
    assert lines[lines.index(api) + 1] == "SVC_PID=$!"  # serve() owns the PID, readiness and stop
    if runtime == "apptainer":
        assert "--gres=gpu:4 apptainer exec --nv" in head and "--gres=gpu:4 apptainer exec --nv" in workers


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_multi_node_structure_native(tmp_path: Path, runtime: str) -> None:
    """The default: vLLM's own multi-node mode -- one vLLM per node, rank 0 in the batch step serves the API,
    the others run headless in one srun step each, all meeting at the first node's address."""
    script = render(tmp_path, runtime, {"model": MODEL, "nodes": 2, **({"venv": VENV} if runtime == "none" else {})})
    lines = script.splitlines()
    for text in ("ray start", "ray status", "RAY_", "--distributed-executor-backend"):
        assert text not in script, text
    [rank] = [line.strip() for line in lines if "srun -J \"vllm-rank$rank\"" in line]
    assert rank.startswith('VLLM_HOST_IP="$ip" srun -J "vllm-rank$rank" -N1 -n1 -w "$node" ')
    for flag in ('--nnodes "$NNODES"', '--node-rank "$rank"', '--master-addr "$HEAD_IP"',
                 '--master-port "$MASTER_PORT"', "--headless", "--tensor-parallel-size 4",
                 "--pipeline-parallel-size 2"):
        assert flag in rank, flag
    api = api_line(script)
    assert ('--tensor-parallel-size 4 --pipeline-parallel-size 2 --nnodes "$NNODES" --node-rank 0 '
            '--master-addr "$HEAD_IP" --master-port "$MASTER_PORT"') in api
    assert "--headless" not in api and "--distributed-executor-backend" not in api
    assert 'export VLLM_HOST_IP="$HEAD_IP"' in lines and 'echo "BENCHCTL_MASTER=$HEAD_IP:$MASTER_PORT"' in lines
    assert "export NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET" in lines
    if runtime == "apptainer":  # the MeluXina profile names the InfiniBand interface and adapters
        assert "export NCCL_SOCKET_IFNAME=ib0 GLOO_SOCKET_IFNAME=ib0" in lines and "export NCCL_IB_HCA=mlx5" in lines


def test_nccl_transport_from_the_log() -> None:
    from benchctl.services.vllm import nccl_transport

    assert nccl_transport(["mel2041:1234:1250 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB ; OOB ib0:10.4.0.41<0>"]
                          ) == "InfiniBand (NET/IB)"
    assert "NET/Socket" in nccl_transport(["NCCL INFO Channel 00/0 : 0[0] -> 4[0] [send] via NET/Socket/0"])
    assert nccl_transport(["INFO: Started server process"]) == ""


def test_the_ray_backend_takes_the_ray_image(vllm_app: Any) -> None:
    svc = vllm_app.service("vllm")
    svc.ctx.images = {"vllm": "docker://vllm/vllm-openai:v0.30.0", "vllm-ray": "docker://vllm/vllm-openai:v0.10.1.1"}
    assert svc.resolve({"model": MODEL, "nodes": 2, "backend": "ray", "runtime": "apptainer"})["image"].endswith(
        "v0.10.1.1")
    assert svc.resolve({"model": MODEL, "nodes": 2, "runtime": "apptainer"})["image"].endswith("v0.30.0")
    assert svc.resolve({"model": MODEL, "backend": "ray", "image": "docker://x/y:1"})["image"] == "docker://x/y:1"


def test_single_node_has_no_ray(tmp_path: Path) -> None:
    script = render(tmp_path, "apptainer", {"model": MODEL})
    for text in ("ray start", "ray status", "\nsrun ", "RAY_", "--distributed-executor-backend"):
        assert text not in script, text


def test_check_shows_the_model_and_the_parallel_layout(vllm_app: Any, fake_slurm: FakeSlurm) -> None:
    assert vllm_app.run_line(f"start vllm --model {MODEL} --nodes 2"), output(vllm_app)
    assert vllm_app.run_line("check vllm"), output(vllm_app)
    out = output(vllm_app)
    assert f"  model:  {MODEL}" in out
    assert "  layout: TP 4 x PP 2 on 2 node(s) x 4 GPU(s) (vLLM's multi-node mode)" in out
    [job] = vllm_app.jobs.all()
    cpu = Vllm.details(vllm_app.service("vllm"), job.__class__(**{**job.__dict__, "options": {
        **job.options, "nodes": "1", "gpus_per_node": "0"}}))  # the job table keeps text
    assert cpu[-1] == ("layout", "TP 1 x PP 1 on 1 node(s) x 0 GPU(s)")
