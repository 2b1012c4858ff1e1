"""Config: defaults, file, environment overrides, and clear errors (exit 2) for broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import backlight

from backlight.config import ConfigError, load


def test_embedded_defaults_cover_three_processes(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a backlight.toml the embedded defaults configure onboarding, payments, claims."""
    monkeypatch.chdir(tmp_path)
    settings = load(environ={})
    assert [s.process for s in settings.sources] == ["onboarding", "payments", "claims"]
    assert settings.topic_for("claims") == "claims.events"
    assert settings.store.url == "sqlite:///backlight.db"


def test_environment_overrides_file(tmp_path: Path) -> None:
    """BACKLIGHT_KAFKA__BOOTSTRAP_SERVERS and list items by index override the file."""
    path = tmp_path / "b.toml"
    path.write_text('[kafka]\nbootstrap_servers = "a:1"\n[[sources]]\ntopic = "x"\n')
    env = {"BACKLIGHT_KAFKA__BOOTSTRAP_SERVERS": "kafka-1:9092",
           "BACKLIGHT_SOURCES__0__PROCESS": "claims", "BACKLIGHT_KAFKA__BATCH_SIZE": "100"}
    settings = load(path, environ=env)
    assert settings.kafka.bootstrap_servers == "kafka-1:9092"
    assert settings.kafka.batch_size == 100
    assert settings.sources[0].process == "claims"


def test_secret_comes_from_environment_and_is_masked(tmp_path: Path) -> None:
    """${VAR} in a channel URL is read from the environment and never printed in full."""
    path = tmp_path / "b.toml"
    path.write_text('[[channels]]\ntype = "slack"\nurl = "${HOOK}"\n')
    settings = load(path, environ={"HOOK": "https://hooks.example/T000/SECRET"})
    assert settings.channels[0].url.get_secret_value().endswith("SECRET")
    assert "SECRET" not in repr(settings) and "SECRET" not in str(settings.channels[0])


@pytest.mark.parametrize(("text", "env", "needle"), [
    ('[kafka\nbootstrap_servers = "x"', {}, "not valid TOML"),
    ('[kafka]\nbatch_size = "many"', {}, "kafka.batch_size"),
    ('[kafka]\nbootstrap = "x"', {}, "kafka.bootstrap: unknown key"),
    ('[store]\nurl = "mysql://x"', {}, "store.url: must start with sqlite:///"),
    ('[[sources]]\nprocess = "claims"', {}, "sources[0].topic: required"),
    ('[[sources]]\ntopic = "bad topic!"', {}, "sources[0].topic"),
    ('[[sources]]\ntopic = "a"\n[sources.mapping]\ntimezone = "Mars/Base"', {},
     "sources[0].mapping.timezone: unknown time zone 'Mars/Base'"),
    ('[[sources]]\ntopic = "a"\n[[sources]]\ntopic = "a"', {}, "configured twice"),
    ('[[channels]]\ntype = "slack"\nurl = "${NOPE_NOT_SET}"', {}, "NOPE_NOT_SET is not set"),
    ('[[channels]]\ntype = "pager"\nurl = "https://x"', {}, "channels[0].type"),
    ('[[processes]]\nname = "x"\nlast_reviewed = "last year"', {},
     "processes[0].last_reviewed"),
    ("", {"BACKLIGHT_KAFKA__BATCH_SIZE": "0"}, "kafka.batch_size"),
    ('[[web.tokens]]\nname = "a"\nwrite = true', {}, "give exactly one of sha256 or token"),
    ('[[web.tokens]]\nname = "a"\nsha256 = "abc"', {}, "web.tokens[0].sha256: must be the 64"),
    ('[[web.tokens]]\nname = "a"\ntoken = "short"', {}, "at least 16 characters"),
    ('[web]\nread = "token"', {}, "read = 'token' needs at least one token"),
    ('[web]\nread = "closed"', {}, "web.read"),
])
def test_broken_config_names_key_and_problem(tmp_path: Path, text: str, env: dict[str, str],
                                             needle: str) -> None:
    """Each broken config raises one ConfigError naming the file, the key and the problem."""
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(path, environ=env)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_secret_never_echoed_in_error(tmp_path: Path) -> None:
    """A bad channel URL value is reported without echoing the secret."""
    path = tmp_path / "b.toml"
    path.write_text('[[channels]]\ntype = "slack"\nurl = 42\n')
    with pytest.raises(ConfigError) as err:
        load(path, environ={})
    assert "channels[0].url" in str(err.value) and "42" not in str(err.value)


@pytest.mark.parametrize(("text", "needle"), [
    ('[kafka]\nbatch_size = -5', "kafka.batch_size"),
    ('[[sources]]\ntopic = "x.dlq"', "sources[0].topic"),
    ('[kafka\n', "not valid TOML"),
])
def test_cli_exits_2_on_bad_config(tmp_path: Path, text: str, needle: str) -> None:
    """`backlight consume` with a broken config prints one message with the key and exits 2."""
    path = tmp_path / "broken.toml"
    path.write_text(text)
    proc = backlight("consume", "--config", str(path), check=False, timeout=60)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_exits_2_on_missing_config(tmp_path: Path) -> None:
    """An explicitly named config file that does not exist exits 2 saying so."""
    proc = backlight("consume", "--config", str(tmp_path / "nope.toml"), check=False, timeout=60)
    assert proc.returncode == 2
    assert "no such config file" in proc.stderr


def test_sasl_credentials_reach_the_client_and_not_the_logs(tmp_path: Path) -> None:
    """SASL settings become kafka-python options; the password comes from the environment and
    shows in no repr."""
    path = tmp_path / "b.toml"
    path.write_text('[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\n'
                    'sasl_username = "backlight"\nsasl_password = "${KAFKA_PASSWORD}"\n'
                    'ssl_cafile = "/etc/ssl/kafka-ca.pem"\n')
    settings = load(path, environ={"KAFKA_PASSWORD": "s3cr3t-pw"})
    assert settings.kafka.client_options() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "backlight", "sasl_plain_password": "s3cr3t-pw",
        "ssl_cafile": "/etc/ssl/kafka-ca.pem"}
    assert "s3cr3t-pw" not in repr(settings)
    plain = tmp_path / "plain.toml"
    plain.write_text("")
    assert load(plain, environ={}).kafka.client_options() == {"security_protocol": "PLAINTEXT"}


def test_sasl_without_password_names_the_key(tmp_path: Path) -> None:
    """security_protocol SASL_* without a password is refused, naming sasl_password."""
    path = tmp_path / "b.toml"
    path.write_text('[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
                    'sasl_username = "u"\n')
    with pytest.raises(ConfigError, match="kafka: sasl_password is required"):
        load(path, environ={})


def test_web_token_from_environment_is_never_echoed(tmp_path: Path) -> None:
    """A web token given through ${VAR} is read, kept secret, and absent from the settings' repr."""
    path = tmp_path / "b.toml"
    path.write_text('[[web.tokens]]\nname = "alice"\ntoken = "${ALICE_TOKEN}"\nwrite = true\n')
    settings = load(path, environ={"ALICE_TOKEN": "s3cret-token-value-0001"})
    token = settings.web.tokens[0]
    assert token.token is not None and token.token.get_secret_value() == "s3cret-token-value-0001"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
