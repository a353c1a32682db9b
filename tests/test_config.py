from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from orchestrator_monitor.config import SECTIONS, Settings, choose_workspace, hide_secrets, load_settings
from orchestrator_monitor.errors import BadInput

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_source(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    assert settings.completion.settle_seconds is None  # the schema mapping's default
    assert settings.database.schema_name == "reference"
    assert settings.dashboard.port == 8765
    assert settings.resolve(settings.archive.root) == tmp_path / ".archive"


def test_precedence_flags_then_environment_then_config_file_then_workspace_file(tmp_path: Path) -> None:
    write(
        tmp_path / "config" / "monitor.toml",
        "[dashboard]\nport = 1001\nhost = '127.0.0.2'\n[archive]\nquiet_seconds = 9\n",
    )
    extra = write(tmp_path / "extra.toml", "[dashboard]\nport = 1002\nhost = '127.0.0.3'\n")
    environ = {"ORCHESTRATOR_DASHBOARD_PORT": "1003"}

    settings = load_settings(tmp_path, config_file=extra, environ=environ, overrides=["dashboard.port=1004"])
    assert settings.dashboard.port == 1004  # flag
    assert settings.dashboard.host == "127.0.0.3"  # --config over the workspace file
    assert settings.archive.quiet_seconds == 9  # workspace file over the default
    assert load_settings(tmp_path, config_file=extra, environ=environ).dashboard.port == 1003  # environment
    assert load_settings(tmp_path, config_file=extra, environ={}).dashboard.port == 1002
    assert load_settings(tmp_path, environ={}).dashboard.port == 1001


def test_environment_names_map_to_section_and_key(tmp_path: Path) -> None:
    environ = {
        "ORCHESTRATOR_COMPLETION_SETTLE_SECONDS": "2.5",
        "ORCHESTRATOR_DATABASE_URL": "sqlite:////tmp/x.db",
        "ORCHESTRATOR_DASHBOARD_ENABLED": "false",
        "ORCHESTRATOR_HOME": "/not/a/key",
        "ORCHESTRATOR_EXECUTOR_THREADS": "4",  # not one of our sections: the executor's own variable
        "ORCHESTRATOR_ARCHIVE_ROOT": "",  # empty means unset
    }
    settings = load_settings(tmp_path, environ=environ)
    assert settings.completion.settle_seconds == 2.5
    assert settings.database.url == "sqlite:////tmp/x.db"
    assert settings.dashboard.enabled is False
    assert settings.archive.root == Path(".archive")


def test_workspace_choice_flag_then_environment_then_current_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert choose_workspace("/a", {"ORCHESTRATOR_HOME": "/b"}) == Path("/a")
    assert choose_workspace(None, {"ORCHESTRATOR_HOME": "/b"}) == Path("/b")
    assert choose_workspace(None, {}) == tmp_path


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[dashboard\nport = 1", r"is not valid TOML.*line 1"),
        ("[dashbord]\nport = 1\n", r"unknown section 'dashbord' \(from file .*monitor.toml\)"),
        ("[dashboard]\nprot = 1\n", r"unknown key 'dashboard.prot' \(from file .*monitor.toml\)"),
        ("[dashboard]\nport = 'high'\n", r"dashboard.port = 'high' \(from file .*\): Input should be a valid integer"),
        ("[dashboard]\nport = 70000\n", r"dashboard.port = 70000 .*less than or equal to 65535"),
        ("[completion]\nsettle_seconds = -1\n", r"completion.settle_seconds = -1 .*greater than or equal to 0"),
        ("dashboard = 3\n", r"'dashboard' must be a \[section\] table"),
        ("[database]\nurl = 'sqlite://'\nurl_file = 'u'\n", r"database.url or database.url_file, not both"),
        ("[dashboard]\ntoken = 'short'\n", r"dashboard.token = '\*\*\*' \(from file .*\): .*at least 16 characters"),
    ],
)
def test_a_bad_workspace_file_is_refused_naming_the_key_and_file(tmp_path: Path, toml: str, message: str) -> None:
    write(tmp_path / "config" / "monitor.toml", toml)
    with pytest.raises(BadInput, match=message):
        load_settings(tmp_path, environ={})


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(
        BadInput,
        match=r"completion.settle_seconds = 'soon' \(from environment variable "
        r"ORCHESTRATOR_COMPLETION_SETTLE_SECONDS\)",
    ):
        load_settings(tmp_path, environ={"ORCHESTRATOR_COMPLETION_SETTLE_SECONDS": "soon"})
    with pytest.raises(
        BadInput, match=r"unknown key 'database.uri' \(from environment variable ORCHESTRATOR_DATABASE_URI\)"
    ):
        load_settings(tmp_path, environ={"ORCHESTRATOR_DATABASE_URI": "x"})


SECRET = "Xs3cr3tX"  # recognisable wherever it leaks


@pytest.mark.parametrize(
    ("environ", "overrides", "shown"),
    [
        ({}, [f"dashboard.token={SECRET}"], "dashboard.token = '***' (from --set): String should have at least 16"),
        (
            {"ORCHESTRATOR_ESCALATION_WEBHOOK": f"ftp://hooks.example.com/T0/{SECRET}?key={SECRET}"},
            [],
            "escalation.webhook = 'ftp://hooks.example.com/***' (from environment variable",
        ),
        (
            {},
            [f"database.schema=postgresql://monitor:{SECRET}@db.example.com/orch"],  # a URL where a name was meant
            "database.schema = 'postgresql://monitor:***@db.example.com/orch' (from --set)",
        ),
        (
            {},
            [f"database.busy_timeout_seconds=postgresql://db.example.com/orch?user=m&password={SECRET}"],
            "'postgresql://db.example.com/orch?user=m&password=***'",
        ),
        ({}, [f"dashboard_token={SECRET}"], "--set 'dashboard_token=***': expected section.key=value"),
    ],
)
def test_a_refused_value_is_named_without_any_secret(
    tmp_path: Path, environ: dict[str, str], overrides: list[str], shown: str
) -> None:
    with pytest.raises(BadInput) as refused:
        load_settings(tmp_path, environ=environ, overrides=overrides)
    assert shown in str(refused.value)
    assert SECRET not in str(refused.value)


def test_a_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"configuration file not found: .*nope.toml"):
        load_settings(tmp_path, config_file=tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize("item", ["dashboard.port", "port=1", "=1", "dashboard.=1"])
def test_a_malformed_set_flag_is_refused(tmp_path: Path, item: str) -> None:
    with pytest.raises(BadInput, match=r"--set .*expected section.key=value"):
        load_settings(tmp_path, environ={}, overrides=[item])


def test_the_shipped_config_documents_every_key_with_its_default(tmp_path: Path) -> None:
    text = (REPO / "config" / "monitor.toml").read_text(encoding="utf-8")
    shipped = tomllib.loads(text)
    defaults = Settings(workspace=tmp_path)
    for section, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            key = field.alias or name
            assert f"{key} = " in text, f"config/monitor.toml does not document {section}.{key}"
            if key in shipped.get(section, {}):
                assert (
                    shipped[section][key] == getattr(getattr(defaults, section), name)
                    or str(getattr(getattr(defaults, section), name)) == shipped[section][key]
                ), f"{section}.{key} in config/monitor.toml is not the default"
    assert load_settings(tmp_path, config_file=REPO / "config" / "monitor.toml", environ={}) == defaults


def test_a_bad_alert_rule_is_named_without_showing_its_urls(tmp_path: Path) -> None:
    config = tmp_path / "alerts.toml"
    config.write_text(
        '[alerts]\nurls = ["json://hooks.example.org/SECRET1"]\n'
        '[[alerts.rules]]\nname = "r"\nurls = ["mailto://u:SECRET2@smtp.example.org"]\nthrottle_count = 0\n'
    )
    with pytest.raises(BadInput) as raised:
        load_settings(tmp_path, config_file=config, environ={})
    assert "alerts.rules.0.throttle_count" in str(raised.value)
    assert "SECRET" not in str(raised.value)
    settings = load_settings(tmp_path, environ={}, overrides=["alerts.urls=json://hooks.example.org/SECRET3"])
    assert hide_secrets("posting to json://hooks.example.org/SECRET3 failed", settings) == (
        "posting to json://hooks.example.org/*** failed"
    )
