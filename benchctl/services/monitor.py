"""``monitor``: Prometheus, a Pushgateway and Grafana in one CPU job, which the service jobs register with.

While a monitor job is active, every service job with a metrics endpoint writes a Prometheus ``file_sd``
target file into the monitor's ``targets/`` folder once it is ready and removes it when it ends (the
templates' ``serve`` macro); Prometheus finds it within its refresh interval, nothing is restarted.

Nobody else on the cluster gets in: Prometheus and the Pushgateway read ``web.yml`` (basic auth, only the
bcrypt hash of a password made for this job), Grafana gets an admin password of its own. The passwords are
kept in ``credentials.json`` (0600) in the run folder, handed to the job in its environment, and used by
benchctl's own clients; the batch script, the logs and the transcript never hold them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.executors.base import ExecutorError
from benchctl.jobs import Job
from benchctl.monitor.push import Gateway, PushError, forget_run
from benchctl.options import Option, OptionError
from benchctl.services.base import CREDENTIALS, KEY_VARIABLE, sif_path
from benchctl.services.options import COMMON_OPTIONS
from benchctl.services.server import Endpoint, Server
from benchctl.services.targets import newest_monitor
from benchctl.templates import TemplateError, find_resource_dir

USER = "benchctl"
GRAFANA_VARIABLE = "BENCHCTL_GRAFANA_PASSWORD"
# (template variable, images.yaml key) of the job's three images
IMAGES = (("SIF_PROMETHEUS", "monitor-prometheus"), ("SIF_PUSHGATEWAY", "monitor-pushgateway"),
          ("SIF_GRAFANA", "monitor-grafana"))


def duration(text: str) -> str:
    """A Prometheus duration (``15s``, ``500ms``, ``30d``, ``1h30m``)."""
    if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", text):
        raise OptionError(f"{text!r} is not a Prometheus duration (e.g. 5s, 500ms, 30d)")
    return text


def prometheus_config(targets_dir: str, password_file: str, interval: str) -> str:
    """prometheus.yml with @PROM_PORT@/@PUSH_PORT@ for the ports the job picks (YAML-quoted by the dumper)."""
    import yaml

    auth = {"username": USER, "password_file": password_file}
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": "benchctl", "file_sd_configs": [{"files": [f"{targets_dir}/*.json"],
                                                          "refresh_interval": "5s"}]},
            # --exporters sidecars: behind this monitor's basic auth (they read its web.yml)
            {"job_name": "exporters", "basic_auth": auth,
             "file_sd_configs": [{"files": [f"{targets_dir}/exporters/*.json"], "refresh_interval": "5s"}]},
            {"job_name": "pushgateway", "honor_labels": True, "basic_auth": auth,
             "static_configs": [{"targets": ["127.0.0.1:@PUSH_PORT@"]}]},
            {"job_name": "prometheus", "basic_auth": auth, "static_configs": [{"targets": ["127.0.0.1:@PROM_PORT@"]}]},
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


class Monitor(Server):
    name = "monitor"
    summary = "Prometheus + Pushgateway + Grafana in one job; service jobs register, bench pushes results"
    template = "monitor.sbatch.j2"
    health_path = "/-/ready"
    auth = "basic"
    default_cpus = 4
    ready_timeout = 300
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--retention", "how long Prometheus keeps samples", duration, default="30d", metavar="D"),
        Option("--scrape-interval", "how often Prometheus scrapes every target", duration, default="5s",
               metavar="D"),
        Option("--no-grafana", "run Prometheus and the Pushgateway only", None),
    )

    @classmethod
    def start_options(cls) -> tuple[Option, ...]:
        return COMMON_OPTIONS + cls.extra_options  # no --no-auth: a monitor always admits its owner only

    def auth_on(self, values: Mapping[str, Any]) -> bool:
        return True

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        grafana = not values.get("no_grafana")
        images = []
        if values.get("runtime") == "apptainer":
            for var, key in IMAGES:
                if key == "monitor-grafana" and not grafana:
                    continue
                image = self.ctx.images.get(key)
                if not image:
                    raise TemplateError(f"monitor: no image pinned for {key!r} in sif/images.yaml")
                images.append((var, sif_path(self.ctx.settings, image, key), image))
        data_dir = Path(self.ctx.settings.expand("paths.scratch")) / "benchctl" / "monitor" / run_dir.name
        return {"run_dir": str(run_dir), "data_dir": str(data_dir), "targets_dir": str(run_dir / "targets"),
                "push_port": 0, "grafana_port": 0, "grafana": grafana, "images": images,
                "retention": str(values.get("retention") or "30d")}

    def prepare_run_dir(self, values: Mapping[str, Any], run_dir: Path) -> None:
        files = self.files
        files.mkdir(run_dir / "targets")
        files.write_text(run_dir / "prometheus.yml.in", prometheus_config(
            str(run_dir / "targets"), str(run_dir / "monitor.password"), str(values.get("scrape_interval") or "5s")))
        if not values.get("no_grafana"):  # a copy in the run folder: the job is what it was when submitted
            source = find_resource_dir("batch_templates") / "grafana"
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    target = run_dir / "grafana" / path.relative_to(source)
                    files.mkdir(target.parent)
                    files.write_text(target, path.read_text())

    def make_credentials(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
        """The job's two passwords (Prometheus/Pushgateway, Grafana admin): kept 0600 in the run folder with
        the bcrypt hash Prometheus checks and the curl config the job's readiness check reads."""
        import bcrypt

        password, grafana = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
        files = self.files
        files.write_text(run_dir / CREDENTIALS, json.dumps(
            {"scheme": "basic", "user": USER, "key": password, "grafana_user": USER, "grafana_password": grafana}),
            mode=0o600)
        files.write_text(run_dir / "web.yml", f"basic_auth_users:\n  {USER}: {json.dumps(hashed)}\n", mode=0o600)
        files.write_text(run_dir / "monitor.password", password, mode=0o600)
        files.write_text(run_dir / "curl.conf", f'user = "{USER}:{password}"\n', mode=0o600)
        return {KEY_VARIABLE: password, GRAFANA_VARIABLE: grafana}

    def secrets(self, job: Job) -> dict[str, str]:
        try:
            data = json.loads(self.files.read_text(Path(job.run_dir) / CREDENTIALS))
        except (OSError, ValueError, TypeError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def credentials(self, job: Job) -> dict[str, str]:
        data = self.secrets(job) if job.run_dir else {}
        if not data.get("key"):
            return {}
        token = base64.b64encode(f"{data.get('user', USER)}:{data['key']}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def ports(self, job: Job) -> dict[str, int]:
        """Prometheus's, the Pushgateway's and Grafana's ports, from the job's markers."""
        markers = self.log_info(job).markers if job.out_path else {}
        out = {"prometheus": job.port or 0}
        for name, marker in (("pushgateway", "PUSH_PORT"), ("grafana", "GRAFANA_PORT")):
            if markers.get(marker, "").isdigit():
                out[name] = int(markers[marker])
        return {k: v for k, v in out.items() if v}

    def pushgateway(self, job: Job) -> Endpoint | None:
        """The Pushgateway as benchctl reaches it (through a forward when it runs on a laptop)."""
        ep, port = self.endpoint(job), self.ports(job).get("pushgateway")
        if not (ep and port):
            return None
        host, local = self.ctx.executor.reach(ep.host, port)
        return Endpoint(host, local)

    def active(self) -> Job | None:
        """The newest active monitor job of this executor (what bench pushes to), refreshed, or None."""
        newest = newest_monitor(self.ctx)
        if newest is None:
            return None
        try:  # its port is known once the job said it (no poller refreshes the table in batch modes)
            newest = self.refresh(newest)
        except ExecutorError:
            return newest
        return None if newest.state.is_final else newest

    def gateway(self, job: Job) -> Gateway | None:
        """The job's Pushgateway with the headers that admit benchctl."""
        ep = self.pushgateway(job)
        return Gateway(ep.url, self.credentials(job)) if ep else None

    def stop(self, job: Job, grace: float, *, poll: float = 0.5) -> Job:
        """Delete benchctl's groups from the Pushgateway first (its persistence file outlives the job), then
        stop as every service does."""
        gateway = self.gateway(job) if job.state.name == "RUNNING" else None
        if gateway is not None:
            with contextlib.suppress(PushError):  # a Pushgateway that does not answer is stopped all the same
                forget_run(gateway)
        return super().stop(job, grace, poll=poll)

    def details(self, job: Job) -> list[tuple[str, str]]:
        ep = self.endpoint(job)
        rows: list[tuple[str, str]] = []
        if ep is None or job.state.is_final:
            return rows
        for name, port in self.ports(job).items():
            rows.append((name, f"http://{ep.host}:{port}"))
            tunnel = self.tunnel(job, port)
            if tunnel and name != "prometheus":  # Prometheus's own tunnel is the job's tunnel line
                rows.append((f"{name} tunnel", tunnel))
        rows.append(("targets", str(Path(job.run_dir) / "targets") + " (service jobs register here)"))
        rows.append(("passwords", f"{Path(job.run_dir) / CREDENTIALS} (0600; user {USER})"))
        return rows

    def auth_line(self, job: Job) -> str:
        return "basic auth (Prometheus, Pushgateway) and a Grafana admin password of this job; nobody else gets in"


__all__ = ["Monitor", "duration", "prometheus_config"]
