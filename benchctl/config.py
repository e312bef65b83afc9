"""Layered configuration with provenance, and benchctl's file locations.

Layers, lowest first: packaged defaults (``data/default_config.toml``) → site profile
(``data/profiles/<name>.toml``) → user file (``$BENCHCTL_CONFIG`` or XDG) → recipe → command options.
Every value remembers which layer set it, so ``benchctl config`` can say why a value is what it is.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from benchctl.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PROFILES = ("meluxina", "local")

# Settings whose value is one of a few words (the rest are checked by the type of their default).
CHOICES: dict[str, tuple[str, ...]] = {
    "profile": ("auto", *PROFILES),
    "container.runtime": ("auto", "apptainer", "none"),
    "network.connect": ("ip", "node", "localhost"),
    "bench.client": ("here", "job"),
}
# Numbers with a lower bound: (minimum, strictly above it).
MINIMUM: dict[str, tuple[float, bool]] = {
    "tunnel.port": (1, False), "slurm.stop_grace": (0, False), "ui.poll_interval": (0, True),
    "ui.wait_timeout": (0, True), "node.gpus": (0, False), "node.cpus_per_gpu": (1, False),
    "remote.port": (0, False),
}


class ConfigError(UserError, ValueError):
    """A configuration file or value is unusable; the message names the file and key."""


def xdg_dir(kind: str, fallback: str) -> Path:
    """``$XDG_<KIND>_HOME/benchctl`` or ``~/<fallback>/benchctl``."""
    base = os.environ.get(f"XDG_{kind}_HOME") or str(Path.home() / fallback)
    return Path(base) / "benchctl"


def user_config_path() -> Path:
    env = os.environ.get("BENCHCTL_CONFIG")
    return Path(env).expanduser() if env else xdg_dir("CONFIG", ".config") / "config.toml"


def state_dir() -> Path:
    """History and benchctl's own log live here (per user, not per project)."""
    return xdg_dir("STATE", ".local/state")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _load_toml_text(text: str, origin: str) -> dict[str, Any]:
    try:
        return _flatten(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _packaged(name: str) -> str:
    return resources.files("benchctl.data").joinpath(name).read_text()


@dataclass
class RemoteSide:
    """The login node the ``ssh`` executor submits to: jobs' paths name ITS user and home, not the laptop's."""

    user: str
    home_dir: Callable[[], str]  # its $HOME, asked over the connection the first time a path needs it
    _home: str = field(default="", repr=False)

    def home(self) -> str:
        if not self._home:
            self._home = self.home_dir()
        return self._home

    def expanduser(self, text: str) -> str:
        """``~`` and ``~/x`` as the login node's shell expands them (``~other`` is left alone)."""
        if text == "~" or text.startswith("~/"):
            return self.home() + text[1:]
        return text


@dataclass
class Settings:
    """Effective configuration: ``values[key]`` and ``sources[key]`` (the layer that set it).

    ``remote`` is set by the ``ssh`` executor: then ``{user}``, ``~`` and ``{home}`` in the jobs' paths are the
    login node's, while ``home`` (the job table, results, transcripts) stays on this machine.
    """

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    remote: RemoteSide | None = None

    def layer(self, data: Mapping[str, Any], source: str, *, strict: bool = True, text: str = "") -> None:
        """Apply a layer. Unknown keys and values of the wrong type or outside their choices are an error
        naming the source, the key (and its line in ``text``, the file's content, when given)."""
        for key, value in data.items():
            where = f"{source}{_line_of(text, key)}"
            if strict and key not in self.values:
                raise ConfigError(f"{where}: unknown setting {key!r}")
            default = self.values.get(key)
            if default is not None and value is not None and not _same_kind(default, value):
                raise ConfigError(f"{where}: {key} should be {_kind_name(default)}, got {value!r}")
            if strict:
                _check_value(key, value, where)
            self.values[key] = value
            self.sources[key] = source

    def get(self, key: str) -> Any:
        return self.values[key]

    def text(self, key: str) -> str:
        return str(self.values[key])

    def expand(self, key: str, **extra: str) -> str:
        """A path-like value with ``{home}``, ``{scratch}``, ``{account}``, ``{user}`` expanded."""
        return self.expand_text(self.text(key), **extra)

    def expand_text(self, text: str, **extra: str) -> str:
        return self._expand(text, self.remote, extra)

    def _expand(self, text: str, remote: RemoteSide | None, extra: Mapping[str, str]) -> str:
        if remote is None:
            names = {"user": os.environ.get("USER") or getpass.getuser(),
                     "home": str(Path(os.path.expanduser(self.text("home"))))}
        else:
            names = {"user": remote.user, "home": str(self.job_home)}
        names.update({"account": self.text("slurm.account"), **extra})
        for _ in range(3):  # {scratch} may itself contain {account}
            if "{scratch}" in text:
                text = text.replace("{scratch}", self.text("paths.scratch"))
            for k, v in names.items():
                text = text.replace("{" + k + "}", v)
        return remote.expanduser(text) if remote else os.path.expanduser(text)

    @property
    def job_home(self) -> Path:
        """Where jobs' folders live: ``home`` here, or on the login node (``remote.home``, else ``home`` as the
        login node expands it) with the ``ssh`` executor."""
        if self.remote is None:
            return self.home
        raw = str(self.values.get("remote.home") or "") or self.text("home")
        return Path(self.remote.expanduser(raw.replace("{user}", self.remote.user)))

    @contextlib.contextmanager
    def overlay(self, values: Mapping[str, Any]) -> Iterator[None]:
        """These values for the duration of a block (one job's --account in its paths), then the old ones."""
        saved = {k: (self.values.get(k), self.sources.get(k)) for k in values}
        self.values.update(values)
        try:
            yield
        finally:
            for key, (value, source) in saved.items():
                self.values[key] = value
                if source is None:
                    self.sources.pop(key, None)
                else:
                    self.sources[key] = source

    @property
    def home(self) -> Path:
        """benchctl's folder on THIS machine (job table, results, transcripts), even with the ssh executor."""
        return Path(self._expand(self.text("home"), None, {}))

    def copy(self) -> Settings:
        return Settings(dict(self.values), dict(self.sources), self.remote)


def _kind_name(value: Any) -> str:
    return {"str": "text", "int": "a whole number", "float": "a number", "bool": "true or false",
            "list": "a list"}.get(type(value).__name__, type(value).__name__)


def _check_value(key: str, value: Any, where: str) -> None:
    choices = CHOICES.get(key) or (_executor_choices() if key == "executor" else None)
    if choices and value not in choices:
        raise ConfigError(f"{where}: {key} = {value!r}: expected one of {', '.join(choices)}")
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} should be a list of text (paths or names), got {value!r}")
    if key in MINIMUM and isinstance(value, (int, float)):
        low, strictly = MINIMUM[key]
        if value < low or (strictly and value == low):
            raise ConfigError(f"{where}: {key} = {value!r}: must be {'above' if strictly else 'at least'} {low:g}")


def _executor_choices() -> tuple[str, ...]:
    from benchctl.executors import executor_choices  # the executor registry says what exists

    return executor_choices()


def _line_of(text: str, key: str) -> str:
    """`` line N`` where ``key`` (``section.name``) is set in the TOML text, '' when not found."""
    if not text:
        return ""
    section, _, name = key.rpartition(".")
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped.strip("[] ")
        elif current == section and stripped.split("=", 1)[0].strip() == name and "=" in stripped:
            return f" line {number}"
    return ""


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def load_settings(*, executor: str | None = None, profile: str | None = None,
                  config_path: Path | None = None, env: Mapping[str, str] | None = None,
                  resolve_executor: Callable[[str], str] = lambda name: name) -> Settings:
    """Build the effective settings.

    ``executor``/``profile`` are command-line choices (highest precedence). ``resolve_executor`` turns
    ``auto`` into a concrete executor; the profile ``auto`` then picks ``meluxina`` unless the executor is
    ``local`` (a machine without Slurm is not a MeluXina login node).
    """
    env = os.environ if env is None else env
    settings = Settings()
    settings.layer(_load_toml_text(_packaged("default_config.toml"), "default"), "default", strict=False)
    path = config_path or user_config_path()
    user: dict[str, Any] = {}
    text = ""
    named = config_path is None and bool(env.get("BENCHCTL_CONFIG"))
    if path.exists():
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); a TOML file is UTF-8"
                              ) from None
        user = _load_toml_text(text, str(path))
    elif named:  # a file named explicitly must exist: a typo in the path would silently use the defaults
        raise ConfigError(f"BENCHCTL_CONFIG={path}: no such file")
    if env.get("BENCHCTL_HOME"):
        user["home"] = env["BENCHCTL_HOME"]
    # The user file's choice of executor and profile decides the layers below: check those two first.
    for key in ("executor", "profile"):
        if key in user:
            settings.layer({key: user[key]}, f"user {path}", text=text)
    requested = executor or str(user.get("executor", "auto"))
    resolved = resolve_executor(requested)
    chosen = profile or str(user.get("profile", "auto"))
    if chosen == "auto":
        chosen = "local" if resolved == "local" else "meluxina"
    if chosen not in PROFILES:
        origin = "option --profile" if profile else f"user {path}{_line_of(text, 'profile')}"
        raise ConfigError(f"{origin}: unknown profile {chosen!r} (choose from {', '.join(PROFILES)})")
    settings.layer(_load_toml_text(_packaged(f"profiles/{chosen}.toml"), f"profile {chosen}"), f"profile {chosen}")
    settings.layer(user, f"user {path}", text=text)
    if env.get("BENCHCTL_HOME"):
        settings.sources["home"] = "env BENCHCTL_HOME"
    if profile:
        settings.sources["profile"] = "option"
    elif settings.values.get("profile") == "auto":
        settings.sources["profile"] += f" (auto, {resolved} executor)"
    settings.values["profile"] = chosen
    if executor:
        settings.sources["executor"] = "option"
    if resolved != requested:
        settings.sources["executor"] = f"{settings.sources['executor']} ({requested})"
    settings.values["executor"] = resolved
    return settings
