"""Config: defaults, file, environment overrides, and clear errors (exit 2) for broken files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from conftest import backlight
from structlog.testing import capture_logs

from backlight.config import ConfigError, default_toml, load


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
    ('[[sources]]\ntopic = "a"\nmax_depth = 1', {}, "sources[0].max_depth"),
    ('[[sources]]\ntopic = "a"\nmax_future_skew = "soon"', {},
     "sources[0].max_future_skew: 'soon' is not a duration"),
    ('[[sources]]\ntopic = "a"\nmax_future_skew = "2 business days"', {},
     "sources[0].max_future_skew: a clock skew is wall-clock time"),
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
    ('[alerts]\nflap_changes = 0', {}, "alerts.flap_changes"),
    ('[alerts]\nflap_window = "2 business days"', {}, "alerts.flap_window"),
    ('[alerts]\nrecurrence_window = "3 business days"', {}, "alerts.recurrence_window"),
    ('[alerts]\ntime_to_act_window = "3 business days"', {}, "alerts.time_to_act_window"),
    ('[alerts]\ntime_to_act_window = "soon"', {}, "alerts.time_to_act_window"),
    ('[alerts]\nconfirm_after = "soon"', {}, "alerts.confirm_after: 'soon' is not a duration"),
    ('[alerts]\nconfirm_after = "-1 days"', {}, "alerts.confirm_after"),
    ('[alerts.rules.rework]\nclear_z = 3.5', {}, "clear_z"),
    ('[alerts.rules.rework]\nmin_support_share = 2', {}, "min_support_share"),
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
    secret = 73_019_586_241
    path.write_text(f'[[channels]]\ntype = "slack"\nurl = {secret}\n')
    with pytest.raises(ConfigError) as err:
        load(path, environ={})
    message = str(err.value).replace(str(path), "<path>")
    assert "channels[0].url" in message and str(secret) not in message


@pytest.mark.parametrize(("text", "needle"), [
    ('[kafka]\nbatch_size = -5', "kafka.batch_size"),
    ('[[sources]]\ntopic = "x.dlq"', "sources[0].topic"),
    ('[[sources]]\ntopic = "x"\nmax_depth = 1000', "sources[0].max_depth"),
    ('[[sources]]\ntopic = "x"\nmax_future_skew = "-1 day"', "sources[0].max_future_skew"),
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


def test_source_limits_reach_the_decoder(tmp_path: Path) -> None:
    """A source's max_depth and max_future_skew are the limits its messages are decoded with."""
    path = tmp_path / "limits.toml"
    path.write_text('[[sources]]\ntopic = "a"\nmax_depth = 8\nmax_future_skew = "90 minutes"\n'
                    '[[sources]]\ntopic = "b"\n')
    tuned, default = (source.spec() for source in load(path, environ={}).sources)
    assert (tuned.max_depth, tuned.max_future_skew_us) == (8, 90 * 60 * 1_000_000)
    assert (default.max_depth, default.max_future_skew_us) == (32, 86_400 * 1_000_000)


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


def test_web_token_written_out_in_the_file_is_refused(tmp_path: Path) -> None:
    """A token written out in the file is refused, naming its key and never its value; the
    same token from the environment (a BACKLIGHT_* variable or ${VAR}) or as sha256 is read."""
    path = tmp_path / "b.toml"
    path.write_text('[[web.tokens]]\nname = "alice"\ntoken = "plain-token-in-file-0001"\n')
    with pytest.raises(ConfigError, match=r"web\.tokens\[0\]\.token: written out in the file") \
            as refused:
        load(path, environ={})
    assert "plain-token" not in str(refused.value)
    path.write_text('[[web.tokens]]\nname = "alice"\n')
    by_env = load(path, environ={"BACKLIGHT_WEB__TOKENS__0__TOKEN": "from-environment-0001"})
    assert by_env.web.tokens[0].token is not None
    path.write_text('[[web.tokens]]\nname = "alice"\nsha256 = "' + "ab" * 32 + '"\n')
    assert load(path, environ={}).web.tokens[0].sha256 == "ab" * 32


def _defaults_file(tmp_path: Path) -> Path:
    path = tmp_path / "b.toml"
    path.write_text(default_toml())
    return path


def test_env_sets_list_values_as_json(tmp_path: Path) -> None:
    """A list key takes a JSON list from the environment, replacing the file's list."""
    env = {"BACKLIGHT_PROCESSES__0__END_ACTIVITIES": '["Approved", "Rejected"]',
           "BACKLIGHT_WEB__TRUSTED_PROXIES": '["10.0.0.7", "10.0.0.8"]',
           "BACKLIGHT_PROCESSES__1__OWNER": '["ann", "bob"]'}
    settings = load(_defaults_file(tmp_path), environ=env)
    assert settings.processes[0].end_activities == ("Approved", "Rejected")
    assert settings.web.trusted_proxies == ("10.0.0.7", "10.0.0.8")
    assert settings.processes[1].owners == ("ann", "bob")


def test_env_next_index_adds_a_list_item(tmp_path: Path) -> None:
    """With three sources in the file, BACKLIGHT_SOURCES__3__* adds a fourth; the others stay."""
    env = {"BACKLIGHT_SOURCES__3__TOPIC": "refunds.events",
           "BACKLIGHT_SOURCES__3__PROCESS": "refunds",
           "BACKLIGHT_WEB__TRUSTED_PROXIES__2": "10.0.0.9"}
    settings = load(_defaults_file(tmp_path), environ=env)
    assert [s.topic for s in settings.sources] == [
        "onboarding.events", "payments.events", "claims.events", "refunds.events"]
    assert settings.topic_for("refunds") == "refunds.events"
    assert settings.web.trusted_proxies == ("127.0.0.1", "::1", "10.0.0.9")


def test_env_items_apply_in_index_order_after_a_whole_list(tmp_path: Path) -> None:
    """A whole list set as JSON comes first, then items by index, 10 after 9 (not after 1)."""
    path = tmp_path / "b.toml"
    path.write_text("")
    env = {f"BACKLIGHT_SOURCES__{i}__TOPIC": f"t{i}" for i in range(1, 12)}
    env |= {"BACKLIGHT_SOURCES": '[{"topic": "t0", "process": "p0"}]',
            "BACKLIGHT_SOURCES__0__PROCESS": "first"}
    settings = load(path, environ=env)
    assert [s.topic for s in settings.sources] == [f"t{i}" for i in range(12)]
    assert settings.sources[0].process == "first"


@pytest.mark.parametrize(("env", "needle"), [
    ({"BACKLIGHT_SOURCES__5__TOPIC": "x"},
     "BACKLIGHT_SOURCES__5__TOPIC: sources has 3 item(s); the next one is index 3, not 5"),
    ({"BACKLIGHT_SOURCES__TOPIC": "x"}, "BACKLIGHT_SOURCES__TOPIC: sources is a list"),
    ({"BACKLIGHT_WEB__TRUSTED_PROXIES": '["10.0.0.1"'},
     "BACKLIGHT_WEB__TRUSTED_PROXIES: not valid JSON"),
    ({"BACKLIGHT_KAFKA__BATCH_SIZE__MAX": "1"},
     "BACKLIGHT_KAFKA__BATCH_SIZE__MAX: kafka.batch_size is a single value"),
    ({"BACKLIGHT_KAFKA__BATCH_SIZE": "many"},
     "kafka.batch_size: Input should be a valid integer"),
    ({"BACKLIGHT_KAFKA__BATCH_SIZE": "many"}, "(set by environment BACKLIGHT_KAFKA__BATCH_SIZE)"),
    ({"BACKLIGHT_WEB__TRUSTED_PROXIES": "10.0.0.1"},
     "web.trusted_proxies: Input should be a valid tuple"),
])
def test_env_that_cannot_apply_names_the_variable(tmp_path: Path, env: dict[str, str],
                                                  needle: str) -> None:
    """A variable naming a real key that cannot be applied is a ConfigError naming it."""
    with pytest.raises(ConfigError) as err:
        load(_defaults_file(tmp_path), environ=env)
    assert needle in str(err.value)


def test_env_unknown_variables_are_ignored_with_a_warning(
        tmp_path: Path) -> None:
    """BACKLIGHT_* names that are not config keys are ignored; each is logged by name, never by
    value; BACKLIGHT_CACHE, BACKLIGHT_LOG_FORMAT and names used as ${...} are not warned of."""
    path = _defaults_file(tmp_path)
    path.write_text(path.read_text() + '\n[[web.tokens]]\nname = "alice"\n'
                    'token = "${BACKLIGHT_TOKEN_ALICE}"\n')
    base = {"BACKLIGHT_TOKEN_ALICE": "alice-token-0123456789"}
    stray = {"BACKLIGHT_VERSION": "val-1.2", "BACKLIGHT_HOME": "val-home",
             "BACKLIGHT_KAKFA__BOOTSTRAP_SERVERS": "val-typo-section",
             "BACKLIGHT_KAFKA__BOOTSTRAP_SERVER": "val-typo-key",
             "BACKLIGHT_CACHE": "/tmp/cache", "BACKLIGHT_LOG_FORMAT": "json"}
    with capture_logs() as logged:
        settings = load(path, environ=base | stray)
    assert settings == load(path, environ=base)
    warnings = [e for e in logged if e["log_level"] == "warning"]
    warned = sorted(e["variable"] for e in warnings)
    assert warned == ["BACKLIGHT_HOME", "BACKLIGHT_KAFKA__BOOTSTRAP_SERVER",
                      "BACKLIGHT_KAKFA__BOOTSTRAP_SERVERS", "BACKLIGHT_VERSION"]
    hints = " ".join(e["why"] for e in warnings)
    assert "did you mean bootstrap_servers?" in hints and "did you mean kafka?" in hints
    assert "val-" not in str(logged) and "alice-token" not in str(logged)


def test_env_values_expand_and_secrets_stay_secret(tmp_path: Path) -> None:
    """${VAR} in a BACKLIGHT_* value is expanded; secret keys set so stay masked in the repr."""
    env = {"BACKLIGHT_STORE__URL": "postgresql://backlight:${PG_PW}@db:5432/backlight",
           "PG_PW": "pg-s3cret", "BACKLIGHT_WEB__SECRET": "${WEB_SECRET}",
           "WEB_SECRET": "cookie-s3cret", "BACKLIGHT_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
           "BACKLIGHT_KAFKA__SASL_MECHANISM": "PLAIN", "BACKLIGHT_KAFKA__SASL_USERNAME": "u",
           "BACKLIGHT_KAFKA__SASL_PASSWORD": "kafka-s3cret"}
    settings = load(_defaults_file(tmp_path), environ=env)
    assert settings.store.url == "postgresql://backlight:pg-s3cret@db:5432/backlight"
    assert settings.web.secret is not None
    assert settings.web.secret.get_secret_value() == "cookie-s3cret"
    assert settings.kafka.client_options()["sasl_plain_password"] == "kafka-s3cret"
    assert "cookie-s3cret" not in repr(settings) and "kafka-s3cret" not in repr(settings)


def test_cli_warns_of_stray_variable_and_runs(tmp_path: Path) -> None:
    """`backlight broker status` with BACKLIGHT_VERSION set runs on, warning by name only."""
    proc = backlight("broker", "status", check=False, timeout=60, env={
        "BACKLIGHT_VERSION": "v-9.9-value", "BACKLIGHT_BROKER__DIRECTORY": str(tmp_path / "b")})
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "not running"
    assert "BACKLIGHT_VERSION" in proc.stderr and "v-9.9-value" not in proc.stderr


def test_env_names_are_case_insensitive(tmp_path: Path) -> None:
    """A BACKLIGHT_* name is read whatever its case, list items by index too."""
    env = {"backlight_kafka__batch_size": "9", "Backlight_Web__Trusted_Proxies__2": "10.0.0.9"}
    settings = load(_defaults_file(tmp_path), environ=env)
    assert settings.kafka.batch_size == 9
    assert settings.web.trusted_proxies == ("127.0.0.1", "::1", "10.0.0.9")


def test_load_reads_the_environment_it_is_given(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """load(environ=...) reads that mapping only, even an empty one; without it, the process's."""
    monkeypatch.setenv("BACKLIGHT_KAFKA__BATCH_SIZE", "7")
    path = _defaults_file(tmp_path)
    assert load(path, environ={}).kafka.batch_size == 5000
    assert load(path).kafka.batch_size == 7


def test_quiet_defaults_remind_monthly_and_detect_flapping(tmp_path: Path) -> None:
    """The defaults: a firing alert is reminded every 28 days (not every weekly round), flap
    detection counts over 28 days and more than 2 changes, rework holds down to z 2."""
    path = tmp_path / "backlight.toml"
    path.write_text(default_toml())
    alerts = load(path, environ={}).alerts
    assert (alerts.repeat_interval, alerts.flap_window, alerts.flap_changes) == (
        "28 days", "28 days", 2)
    assert alerts.rules.rework.clear_z == 2.0 and alerts.rules.rework.min_support_cases == 5


def test_resolutions_are_confirmed_after_a_business_week_and_recur_within_a_month(
        tmp_path: Path) -> None:
    """The defaults: confirm_after 5 business days, recurrence_window 30 days, as the lifecycle
    policy takes them; a file may set either."""
    from alerts.duration import Duration
    from backlight.alerting import policy

    path = tmp_path / "backlight.toml"
    path.write_text(default_toml())
    settings = load(path, environ={})
    assert (settings.alerts.confirm_after, settings.alerts.recurrence_window) == (
        "5 business days", "30 days")
    assert policy(settings).confirm_after == Duration(5, "business_days")
    assert policy(settings).recurrence_window == timedelta(days=30)
    path.write_text('[alerts]\nconfirm_after = "3 days"\nrecurrence_window = "2 weeks"\n')
    changed = policy(load(path, environ={}))
    assert (changed.confirm_after, changed.recurrence_window) == (
        Duration(3, "days"), timedelta(weeks=2))


def test_time_to_act_covers_the_last_90_days_unless_configured(tmp_path: Path) -> None:
    """The default time-to-act window is 90 days; a file may set another wall duration."""
    from backlight.time_to_act import window_of

    path = tmp_path / "backlight.toml"
    path.write_text(default_toml())
    assert window_of(load(path, environ={})) == timedelta(days=90)
    path.write_text('[alerts]\ntime_to_act_window = "2 weeks"\n')
    assert window_of(load(path, environ={})) == timedelta(weeks=2)
