"""benchctl.config: layered settings with provenance, and the ``config`` command that shows them."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchctl.config import ConfigError, Settings, load_settings, user_config_path
from benchctl.jobs import JobTable
from benchctl.services import ServiceContext
from benchctl.services.chroma import Chroma


@pytest.fixture
def user_file(isolated_env: Path) -> Path:
    """The user config file conftest points BENCHCTL_CONFIG at (not created yet)."""
    return isolated_env / "config.toml"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- precedence and provenance ------------------------------------------------------------------


def test_defaults_only_local_profile(isolated_env: Path) -> None:
    s = load_settings(executor="local")
    assert s.get("profile") == "local"
    assert s.sources["profile"].startswith("default")  # the default "auto", resolved
    assert s.get("slurm.time") == "01:00:00"
    assert s.sources["slurm.time"] == "default"
    assert s.get("slurm.account") == ""
    assert s.sources["slurm.account"] == "default"
    assert s.get("slurm.partition_cpu") == "cpu"
    assert s.sources["slurm.partition_cpu"] == "profile local"
    assert s.get("container.runtime") == "none"
    assert s.sources["container.runtime"] == "profile local"


def test_profile_overrides_default() -> None:
    s = load_settings(executor="slurm", profile="meluxina")
    assert s.get("slurm.account") == ""  # no project baked in: Slurm's default account is taken at start
    assert s.sources["slurm.account"] == "profile meluxina"
    assert s.get("tunnel.port") == 8822
    assert s.sources["tunnel.port"] == "profile meluxina"
    assert s.get("container.modules") == ["env/release/2025.1", "Apptainer/1.4.2-GCCcore-14.2.0"]
    # keys the profile does not set stay default
    assert s.get("ui.wait_timeout") == 900
    assert s.sources["ui.wait_timeout"] == "default"


def test_user_file_overrides_profile(user_file: Path) -> None:
    write(user_file, '[slurm]\naccount = "p999999"\ntime = "02:00:00"\n\n[tunnel]\nport = 2222\n')
    s = load_settings(executor="slurm", profile="meluxina")
    src = f"user {user_file}"
    assert s.get("slurm.account") == "p999999"
    assert s.sources["slurm.account"] == src
    assert s.get("slurm.time") == "02:00:00"
    assert s.sources["slurm.time"] == src
    assert s.get("tunnel.port") == 2222
    assert s.sources["tunnel.port"] == src
    # untouched keys keep their lower layer
    assert s.sources["slurm.qos"] == "profile meluxina"
    assert s.sources["slurm.stop_grace"] == "default"


def test_command_option_overrides_user_file(user_file: Path) -> None:
    write(user_file, 'executor = "local"\nprofile = "local"\n')
    s = load_settings()
    assert (s.get("executor"), s.sources["executor"]) == ("local", f"user {user_file}")
    assert (s.get("profile"), s.sources["profile"]) == ("local", f"user {user_file}")
    s = load_settings(executor="slurm", profile="meluxina")
    assert (s.get("executor"), s.sources["executor"]) == ("slurm", "option")
    assert (s.get("profile"), s.sources["profile"]) == ("meluxina", "option")
    assert s.get("container.modules") == ["env/release/2025.1", "Apptainer/1.4.2-GCCcore-14.2.0"]


def test_start_option_overrides_every_settings_layer(user_file: Path) -> None:
    """Full chain for slurm.account: default "" < profile < user file < `start --account`."""
    write(user_file, '[slurm]\naccount = "p999999"\n')
    s = load_settings(executor="slurm", profile="meluxina")
    chroma = Chroma(ServiceContext(settings=s, executor=None, jobs=JobTable(None), renderer=None,  # type: ignore[arg-type]
                                   images={"chroma": "docker://chromadb/chroma:1.5.9"}, host_bin_dir="/opt/bin"))
    assert chroma.resolve({})["account"] == "p999999"
    assert chroma.resolve({"account": "p111111"})["account"] == "p111111"
    assert chroma.resolve({"account": None})["account"] == "p999999"  # an unset option does not override
    # recipe sits between the settings and the option
    assert chroma.resolve({}, {"account": "p222222"})["account"] == "p222222"
    assert chroma.resolve({"account": "p111111"}, {"account": "p222222"})["account"] == "p111111"


def test_resolved_auto_executor_source_shows_the_request() -> None:
    s = load_settings(resolve_executor=lambda name: "local")
    assert s.get("executor") == "local"
    assert s.sources["executor"] == "default (auto)"
    s = load_settings(executor="auto", resolve_executor=lambda name: "slurm")
    assert s.get("executor") == "slurm"
    assert s.sources["executor"] == "option (auto)"


@pytest.mark.parametrize(("resolved", "profile"), [("local", "local"), ("slurm", "meluxina")])
def test_profile_auto_is_meluxina_unless_local(resolved: str, profile: str) -> None:
    s = load_settings(resolve_executor=lambda name: resolved)
    assert s.get("profile") == profile
    assert s.get("executor") == resolved


def test_explicit_profile_with_local_executor() -> None:
    s = load_settings(executor="local", profile="meluxina")
    assert s.get("profile") == "meluxina"
    assert s.get("executor") == "local"


def test_user_file_profile_auto_follows_executor(user_file: Path) -> None:
    write(user_file, 'profile = "auto"\nexecutor = "local"\n')
    assert load_settings().get("profile") == "local"


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'lumi'"):
        load_settings(executor="slurm", profile="lumi")


# ---- broken user files --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ['bogus = 1\n', '[slurm]\naccuont = "p1"\n', '[nope]\nx = 1\n'])
def test_unknown_key_in_user_file_names_the_file(user_file: Path, text: str) -> None:
    write(user_file, text)
    with pytest.raises(ConfigError, match="unknown setting") as info:
        load_settings(executor="slurm")
    assert str(user_file) in str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[slurm]\ntime = 5\n", "slurm.time"),
        ('[slurm]\nstop_grace = "soon"\n', "slurm.stop_grace"),
        ("[slurm]\nstop_grace = true\n", "slurm.stop_grace"),  # a bool is not a number here
        ('[container]\nmodules = "Apptainer"\n', "container.modules"),
        ('[ui]\ncomplete_while_typing = "yes"\n', "ui.complete_while_typing"),
        ('[ui]\npoll_interval = "fast"\n', "ui.poll_interval"),
        ('slurm = "x"\n', "slurm"),  # a table replaced by a scalar
    ],
)
def test_wrong_type_in_user_file(user_file: Path, text: str, key: str) -> None:
    write(user_file, text)
    with pytest.raises(ConfigError) as info:
        load_settings(executor="slurm")
    assert str(user_file) in str(info.value)
    assert key in str(info.value)


def test_int_for_float_is_accepted(user_file: Path) -> None:
    write(user_file, "[ui]\npoll_interval = 2\n")
    assert load_settings(executor="slurm").get("ui.poll_interval") == 2


@pytest.mark.parametrize("text", ["[slurm\naccount = 1\n", 'account = "unterminated\n', "= 3\n", "a = 1\na = 2\n"])
def test_bad_toml(user_file: Path, text: str) -> None:
    write(user_file, text)
    with pytest.raises(ConfigError) as info:
        load_settings(executor="slurm")
    assert str(user_file) in str(info.value)


def test_unreadable_user_file(user_file: Path) -> None:
    user_file.unlink()
    user_file.mkdir()  # exists but cannot be read as a file
    with pytest.raises(ConfigError, match=str(user_file)):
        load_settings(executor="slurm")


@pytest.mark.parametrize(("text", "needle"), [
    ('executor = "k8s"\n', "line 1: executor = 'k8s': expected one of auto, slurm, local"),
    ("executor = 5\n", "line 1: executor should be text, got 5"),
    ('profile = "lumi"\n', "line 1: profile = 'lumi': expected one of auto, meluxina, local"),
    ('\n[container]\nbinds = [1, 2]\n', "line 3: container.binds should be a list of text"),
    ('[container]\nruntime = "docker"\n', "container.runtime = 'docker': expected one of auto, apptainer, none"),
    ("[tunnel]\nport = 0\n", "line 2: tunnel.port = 0: must be at least 1"),
    ('[network]\nconnect = "wifi"\n', "expected one of ip, node, localhost"),
])
def test_every_value_is_checked_with_file_key_line_and_choices(user_file: Path, text: str, needle: str) -> None:
    write(user_file, text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(user_file) in str(info.value) and needle in str(info.value), str(info.value)


def test_non_utf8_config_is_one_line(user_file: Path) -> None:
    user_file.write_bytes(b'[slurm]\naccount = "p\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_settings(executor="slurm")
    assert str(user_file) in str(info.value)


def test_a_named_config_that_does_not_exist_is_an_error(user_file: Path) -> None:
    user_file.unlink()
    with pytest.raises(ConfigError, match=f"BENCHCTL_CONFIG={user_file}: no such file"):
        load_settings(executor="slurm")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# ---- file locations and BENCHCTL_HOME ------------------------------------------------------------


def test_user_config_path_env_and_xdg(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert user_config_path() == isolated_env / "config.toml"
    monkeypatch.delenv("BENCHCTL_CONFIG")
    assert user_config_path() == isolated_env / "home" / ".xdg-config" / "benchctl" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert user_config_path() == isolated_env / "home" / ".config" / "benchctl" / "config.toml"


def test_xdg_user_file_is_read(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCHCTL_CONFIG")
    path = isolated_env / "home" / ".xdg-config" / "benchctl" / "config.toml"
    path.parent.mkdir(parents=True)
    write(path, '[slurm]\nqos = "short"\n')
    s = load_settings(executor="slurm")
    assert s.get("slurm.qos") == "short"
    assert s.sources["slurm.qos"] == f"user {path}"


def test_benchctl_home_env(isolated_env: Path) -> None:
    s = load_settings(executor="local")
    assert s.get("home") == str(isolated_env / "bc")
    assert s.sources["home"] == "env BENCHCTL_HOME"
    assert s.home == isolated_env / "bc"


def test_benchctl_home_env_beats_user_file(user_file: Path, isolated_env: Path) -> None:
    write(user_file, 'home = "/somewhere/else"\n')
    s = load_settings(executor="local")
    assert s.home == isolated_env / "bc"
    assert s.sources["home"] == "env BENCHCTL_HOME"


def test_home_without_env(user_file: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCHCTL_HOME")
    s = load_settings(executor="local")
    assert s.sources["home"] == "default"
    assert s.home == isolated_env / "home" / "benchctl"  # "~/benchctl" under the test HOME
    write(user_file, 'home = "~/work/bc"\n')
    s = load_settings(executor="local")
    assert s.sources["home"] == f"user {user_file}"
    assert s.home == isolated_env / "home" / "work" / "bc"


def test_env_mapping_argument_is_used(isolated_env: Path) -> None:
    s = load_settings(executor="local", env={"BENCHCTL_HOME": "/data/bc"})
    assert s.home == Path("/data/bc")
    s = load_settings(executor="local", env={})
    assert s.sources["home"] == "default"


# ---- expand ---------------------------------------------------------------------------------------


def test_expand_meluxina_scratch_account_user() -> None:
    s = load_settings(executor="slurm", profile="meluxina")
    s.layer({"slurm.account": "p200981"}, "test")
    assert s.expand("paths.scratch") == "/project/scratch/p200981/tester"
    # {scratch} itself contains {account} and {user}
    assert s.expand("container.sif_dir") == "/project/scratch/p200981/tester/benchctl/sif"


def test_expand_local_scratch_under_home(isolated_env: Path) -> None:
    s = load_settings(executor="local")
    assert s.expand("paths.scratch") == str(isolated_env / "bc" / "scratch")
    assert s.expand("container.sif_dir") == str(isolated_env / "bc" / "scratch" / "benchctl" / "sif")


def test_expand_text_all_names(isolated_env: Path) -> None:
    s = load_settings(executor="slurm", profile="meluxina")
    s.layer({"slurm.account": "p200981"}, "test")
    text = s.expand_text("{home}|{account}|{user}|{scratch}|~/x|{unknown}")
    assert text.split("|") == [str(isolated_env / "bc"), "p200981", "tester", "/project/scratch/p200981/tester",
                               "~/x", "{unknown}"]


def test_expand_extra_names_and_override(user_file: Path) -> None:
    write(user_file, '[slurm]\naccount = "p777"\n')
    s = load_settings(executor="slurm", profile="meluxina")
    assert s.expand("paths.scratch") == "/project/scratch/p777/tester"
    assert s.expand("paths.scratch", user="alice") == "/project/scratch/p777/alice"
    assert s.expand_text("{run}/{user}", run="r1") == "r1/tester"


def test_expand_leading_tilde(isolated_env: Path) -> None:
    s = load_settings(executor="local")
    assert s.expand_text("~/cache") == str(isolated_env / "home" / "cache")


def test_copy_is_independent() -> None:
    s = load_settings(executor="local")
    c = s.copy()
    c.layer({"slurm.time": "00:10:00"}, "option")
    assert c.get("slurm.time") == "00:10:00"
    assert c.sources["slurm.time"] == "option"
    assert s.get("slurm.time") == "01:00:00"
    assert s.sources["slurm.time"] == "default"


def test_layer_unknown_and_wrong_type() -> None:
    s = Settings()
    s.layer({"a": 1, "b": "x"}, "default", strict=False)
    with pytest.raises(ConfigError, match=r"recipe r\.yaml: unknown setting 'c'"):
        s.layer({"c": 1}, "recipe r.yaml")
    with pytest.raises(ConfigError, match="b should be text"):
        s.layer({"b": 3}, "option")
    s.layer({"a": 2.5}, "option")
    assert (s.get("a"), s.sources["a"]) == (2.5, "option")


# ---- the `config` command -------------------------------------------------------------------------


def config_rows(text: str) -> dict[str, tuple[str, str]]:
    """SETTING -> (VALUE, FROM) from the rich table ``config`` prints (wrapped cells joined with a space)."""
    rows: dict[str, tuple[str, str]] = {}
    last = ""
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) != 3:
            continue
        if cells[0]:
            last = cells[0]
            rows[last] = (cells[1], cells[2])
        elif last:  # a long value wrapped onto the next line
            value, source = rows[last]
            rows[last] = (" ".join(filter(None, (value, cells[1]))), " ".join(filter(None, (source, cells[2]))))
    return rows


def squash(text: str) -> str:
    """Whitespace-free text, for values rich may have wrapped anywhere."""
    return "".join(text.split())


def test_config_command_shows_values_and_sources(make_app, user_file: Path, isolated_env: Path) -> None:  # type: ignore[no-untyped-def]
    write(user_file, '[slurm]\ntime = "00:30:00"\n')
    app = make_app()
    app.onecmd("config")
    out = app.out.getvalue()
    rows = config_rows(out)
    assert rows["slurm.time"][0] == "00:30:00"
    # rich may wrap or cut (with "…") a long path in the FROM column; the footer shows it whole
    source = squash(rows["slurm.time"][1])
    assert source.startswith("user/")
    assert squash(f"user {user_file}").startswith(source.rstrip("…"))
    assert rows["slurm.account"] == ("", "profile meluxina")  # Slurm's default is taken at the first start
    assert rows["slurm.stop_grace"] == ("20", "default")
    assert rows["executor"] == ("slurm", "option")
    assert rows["profile"] == ("meluxina", "option")
    assert squash(str(isolated_env / "bc")).startswith(squash(rows["home"][0]).rstrip("…"))
    assert rows["home"][1] == "env BENCHCTL_HOME"
    assert rows["container.modules"] == ('["env/release/2025.1", "Apptainer/1.4.2-GCCcore-14.2.0"]', "profile meluxina")
    assert rows["ui.complete_while_typing"] == ("true", "default")
    assert set(rows) == set(app.settings.values)  # every setting, one row each
    assert "SETTING" in out
    assert "FROM" in out
    assert squash(f"user config: {user_file}") in squash(out)
    assert squash(f"benchctl home: {isolated_env / 'bc'}") in squash(out)


def test_config_command_local_profile(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(profile="local", executor="local")
    app.run_line("config")
    rows = config_rows(app.out.getvalue())
    assert rows["profile"] == ("local", "option")
    assert rows["executor"] == ("local", "option")
    assert rows["container.runtime"] == ("none", "profile local")
    assert rows["network.connect"] == ("localhost", "profile local")
    assert rows["slurm.account"][1] == "default"
    assert not app.last_failed
