"""docker/: the compose file and the Dockerfile checked statically (no Docker engine here): every
command and option is a real `backlight` one, every BACKLIGHT_* variable a real config key that
lands where meant, images pinned, secrets from .env, and the image's COPY lines build the wheel."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from conftest import ROOT
from pydantic import BaseModel, SecretStr

from backlight.cli import main
from backlight.config import Settings, load
from backlight.config_env import ENV_PREFIX, NOT_CONFIG, resolve
from ingest.broker import KAFKA_VERSION

DOCKER = ROOT / "docker"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _interpolate(value: str) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} with a dummy for each unset name."""
    def sub(m: re.Match[str]) -> str:
        if m.group(2) in (":-", "-"):
            return m.group(3)
        return f"dummy-{m.group(1).lower()}-0123456789abcdef"
    return _REF.sub(sub, value).replace("$$", "$")


def _env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in raw.items()}


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in _final_stage():
        if word == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))  # type: ignore[misc]
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the Backlight image."""
    return {name: s for name, s in compose["services"].items()
            if s.get("build", {}).get("dockerfile") == "docker/Dockerfile"}


def _command(args: list[str]) -> click.Command:
    """Resolve ``args`` through the real click CLI and parse them; a bad one raises UsageError."""
    command: click.Command = main
    rest = list(args)
    while isinstance(command, click.Group):
        assert rest, f"{args}: names a group, not a command"
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"{args}: backlight has no command {rest[0]!r}"
        command, rest = sub, rest[1:]
    command.make_context(command.name or "backlight", rest)
    return command


def _lookup(settings: BaseModel, name: str) -> Any:
    node: Any = settings
    for part in name[len(ENV_PREFIX):].lower().split("__"):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def test_services_run_real_backlight_commands(compose: dict[str, Any]) -> None:
    """Each Backlight service's command resolves to a real `backlight` subcommand whose click
    parser accepts its options; the roles are two consumers, the alert worker and the web app."""
    roles = []
    for name, service in _ours(compose).items():
        assert "entrypoint" not in service, name
        command = service["command"]
        assert isinstance(command, list), f"{name}: use the exec (list) form"
        try:
            _command(command)
        except click.UsageError as exc:
            pytest.fail(f"{name}: backlight {' '.join(command)}: {exc.format_message()}")
        roles.append(" ".join(w for w in command if not w.startswith("-") and "." not in w))
    assert sorted(roles) == ["alerts run", "consume", "consume", "serve"]


def test_a_wrong_option_is_caught() -> None:
    """The command check refuses an option `backlight consume` does not have."""
    with pytest.raises(click.UsageError, match="--partitions"):
        _command(["consume", "--partitions", "6"])
    with pytest.raises(AssertionError, match="no command 'ingest'"):
        _command(["ingest"])


def test_backlight_variables_are_config_keys_that_land(compose: dict[str, Any],
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every BACKLIGHT_* variable of the image and of each service is a config key (none is
    ignored), the settings validate with them, and each value lands on the key it names."""
    monkeypatch.chdir(tmp_path)  # no backlight.toml: the embedded defaults, as in the image
    for name, service in _ours(compose).items():
        env = {k: _interpolate(v) for k, v in (_image_env() | _env(service)).items()}
        config = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX) and k not in NOT_CONFIG}
        assert config, name
        stray = [k for k, v in config.items() if isinstance(resolve(k, v, Settings), str)]
        assert stray == [], f"{name}: not config keys: {stray}"
        settings = load(environ=env)
        for var, value in config.items():
            actual = _lookup(settings, var)
            if isinstance(actual, SecretStr):
                actual = actual.get_secret_value()
            shown = str(actual).lower() if isinstance(actual, bool) else str(actual)
            assert shown == value, f"{name}: {var} landed as {shown!r}"


def test_consumers_share_one_group(compose: dict[str, Any]) -> None:
    """The consume services use one Kafka group id (so they split the partitions) and distinct
    client ids, and reach the broker at the address Kafka advertises to the compose network."""
    consumers = [_env(s) for s in _ours(compose).values() if s["command"][0] == "consume"]
    assert len(consumers) >= 2
    assert len({c["BACKLIGHT_KAFKA__GROUP_ID"] for c in consumers}) == 1
    assert len({c["BACKLIGHT_KAFKA__CLIENT_ID"] for c in consumers}) == len(consumers)
    kafka = _env(compose["services"]["kafka"])
    advertised = dict(reversed(a.split("://", 1)) for a in
                      kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    for c in consumers:
        assert advertised.get(c["BACKLIGHT_KAFKA__BOOTSTRAP_SERVERS"]) == "PLAINTEXT"
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]  # KRaft: no ZooKeeper


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    """Every image has an explicit tag other than latest; Kafka's is the version the project
    runs and tests (ingest.broker), Backlight's the package's version."""
    tags = {}
    for name, service in compose["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"
        tags[repo] = tag
    assert tags["apache/kafka"] == KAFKA_VERSION
    assert tags["postgres"].split("-")[0].isdigit()
    assert {tags["backlight"]} == {PYPROJECT["project"]["version"]}


def test_secrets_come_from_the_env_file(compose: dict[str, Any], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Secret settings, passwords and URL passwords are ${NAME:?...} references (required, no
    default), and each such name is listed, without a value, in docker/.env.example."""
    monkeypatch.chdir(tmp_path)
    example = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
                   if line.strip() and not line.startswith("#"))
    required = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*):\?[^}]*\}$")
    checked = 0
    for name, service in compose["services"].items():
        env = _env(service)
        settings = load(environ={k: _interpolate(v) for k, v in env.items()}) \
            if name in _ours(compose) else None
        for var, raw in env.items():
            config_key = var.startswith(ENV_PREFIX) and var not in NOT_CONFIG
            secret = "PASSWORD" in var or (settings is not None and config_key
                                           and isinstance(_lookup(settings, var), SecretStr))
            if "://" in raw and "@" in raw:
                userinfo = raw.split("://", 1)[1].rsplit("@", 1)[0]
                secret, raw = True, userinfo.split(":", 1)[1]
            if secret:
                checked += 1
                m = required.match(raw)
                assert m, f"{name}: {var} is not a required ${{...}} reference"
                assert example.get(m.group(1)) == "", f"{m.group(1)} missing or filled in"
    assert checked >= 4  # the store URL (4 services), PostgreSQL's, the web secret and token


def test_services_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    """Backlight services start once Kafka and PostgreSQL report healthy; PostgreSQL keeps its
    data in a named volume; the web app is probed on the /healthz it serves, on its port."""
    services = compose["services"]
    for name, service in _ours(compose).items():
        for dep in ("kafka", "postgres"):
            assert service["depends_on"][dep]["condition"] == "service_healthy", name
            assert services[dep]["healthcheck"]["test"], dep
    volume = services["postgres"]["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    web = services["web"]
    probe = " ".join(web["healthcheck"]["test"])
    port = _env(web)["BACKLIGHT_WEB__PORT"]
    assert f"127.0.0.1:{port}/healthz" in probe
    assert any(str(p).endswith(f":{port}") for p in web["ports"])
    from backlight.web.health import router
    assert "/healthz" in {getattr(r, "path", None) for r in router.routes}


def test_dockerfile_is_pinned_non_root_and_runs_backlight() -> None:
    """Every FROM names a tagged base (not latest), the final stage runs as a non-root user
    with graphviz installed, and the entrypoint is the `backlight` console script."""
    steps = _instructions()
    stages = set()
    for word, args in steps:
        if word == "FROM":
            image, *alias = args.split()
            if image not in stages:
                assert ":" in image and not image.endswith(":latest"), image
            if alias:
                stages.add(alias[-1])
    final = _final_stage()
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(word == "RUN" and "graphviz" in args for word, args in final)
    [entry] = [json.loads(args) for word, args in final if word == "ENTRYPOINT"]
    assert entry == ["backlight"] and "backlight" in PYPROJECT["project"]["scripts"]


def _copied() -> list[str]:
    sources = []
    for word, args in _instructions():
        if word == "COPY" and "--from" not in args:
            sources += args.split()[:-1]
    return sources


def test_dockerfile_copies_what_the_package_needs() -> None:
    """Every COPY source exists and is let through Dockerfile.dockerignore; every package in
    pyproject, the readme and the license files are among them."""
    sources = _copied()
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for src in sources:
        assert (ROOT / src).exists(), src
        assert f"!{src}" in ignore or f"!{src}/" in ignore, f"{src} is not let through"
    dirs = [s for s in sources if (ROOT / s).is_dir()]
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        path = package.replace(".", "/")
        assert any(path == d or path.startswith(d + "/") for d in dirs), package
    for name in [PYPROJECT["project"]["readme"], *PYPROJECT["project"]["license-files"]]:
        assert name in sources, name


def test_copied_files_build_a_complete_wheel(tmp_path: Path) -> None:
    """The build stage replayed without Docker: exactly the COPY sources (less __pycache__)
    build a wheel holding every package's modules, the web templates and static assets."""
    context = tmp_path / "context"
    context.mkdir()
    for src in _copied():
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, context / src,
                            ignore=shutil.ignore_patterns("__pycache__", "*.db*"))
        else:
            shutil.copy(ROOT / src, context / src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(context)], check=True, capture_output=True,
                   timeout=300)
    [wheel] = (tmp_path / "dist").glob("backlight-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        folder = ROOT / package.replace(".", "/")
        for module in folder.glob("*.py"):
            assert module.relative_to(ROOT).as_posix() in names
    web = ROOT / "backlight" / "web"
    for asset in [*web.glob("templates/*.html"), *web.glob("static/*")]:
        assert asset.relative_to(ROOT).as_posix() in names
