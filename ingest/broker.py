"""A real single-node Apache Kafka (KRaft) broker on 127.0.0.1, for development, demos and tests.

The broker's jars come from Maven Central (resolved once into a cache folder, reused after),
the log directory is formatted with Kafka's own StorageTool, and the server runs as a child
process in its own session so that `broker stop` (or the test fixture) can end it cleanly.
Nothing here fakes Kafka: it is the Apache Kafka server, started the way its scripts start it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ingest.errors import BrokerError

KAFKA_VERSION = "4.3.1"
LOG4J_VERSION = "2.25.4"
READY_LINE = "Kafka Server started"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.backlight</groupId>
  <artifactId>local-kafka</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2_PROPERTIES = """status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
"""


def cache_dir() -> Path:
    """Where resolved jars are kept between runs (``BACKLIGHT_CACHE`` overrides)."""
    root = os.environ.get("BACKLIGHT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "backlight"
    )
    return Path(root)


def _require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise BrokerError(
            f"`{tool}` was not found on PATH: the local Kafka broker needs it. "
            f"Install it first, e.g. `apt-get install {package}`."
        )
    return found


def resolve_jars(version: str = KAFKA_VERSION) -> Path:
    """Return the folder holding Apache Kafka's jars, resolving them with Maven the first time.

    Several processes may ask at once on a fresh machine: one resolves while holding a file
    lock (``fcntl``) beside the cache, into a temporary folder of its own that it renames into
    place complete (``.complete`` inside), and the others wait for the lock and use its result."""
    lib = cache_dir() / f"kafka-{version}" / "lib"
    done = lib / ".complete"
    if done.exists():
        return lib
    _require("java", "default-jre-headless")
    mvn = _require("mvn", "maven")
    work = lib.parent
    work.mkdir(parents=True, exist_ok=True)
    with (work / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if done.exists():
            return lib  # another process resolved them while this one waited
        tmp = Path(tempfile.mkdtemp(prefix="lib.", suffix=".partial", dir=work))
        tmp.chmod(0o755)  # mkdtemp's is 0700; the cache is shared like before
        try:
            _maven_copy(mvn, version, tmp)
            (tmp / ".complete").write_text(version)
            shutil.rmtree(lib, ignore_errors=True)  # an incomplete folder from before locking
            tmp.rename(lib)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return lib


def _maven_copy(mvn: str, version: str, into: Path) -> None:
    """Resolve Kafka's runtime jars with Maven and copy them into ``into``."""
    pom = into / "pom.xml"
    pom.write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
    jars = into / "jars"
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={jars}"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise BrokerError(
            f"Maven could not resolve Apache Kafka {version} from Maven Central:\n" + "\n".join(tail)
        )
    for jar in jars.iterdir():
        jar.rename(into / jar.name)
    jars.rmdir()
    pom.unlink()
    target = into / "target"  # Maven's build folder beside the pom, if it made one
    shutil.rmtree(target, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) is not alive.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass(frozen=True)
class BrokerState:
    """What a running local broker left in its folder: enough to find it and stop it."""

    pid: int
    port: int
    controller_port: int
    version: str
    directory: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


class LocalBroker:
    """A local Apache Kafka broker living in ``directory`` (data, logs, state file)."""

    def __init__(self, directory: str | os.PathLike[str], version: str = KAFKA_VERSION) -> None:
        self.directory = Path(directory).resolve()
        self.version = version

    @property
    def _state_file(self) -> Path:
        return self.directory / "broker.json"

    @property
    def log_file(self) -> Path:
        return self.directory / "broker.log"

    def state(self) -> BrokerState | None:
        """The running broker's state, or None when none runs from this folder."""
        try:
            raw = json.loads(self._state_file.read_text())
            state = BrokerState(**raw)
        except (OSError, ValueError, TypeError):
            return None
        if not _pid_alive(state.pid):
            return None
        return state

    def start(self, timeout: float = 120.0) -> BrokerState:
        """Start the broker (or return the one already running here) and wait until it serves."""
        running = self.state()
        if running is not None:
            return running
        java = _require("java", "default-jre-headless")
        lib = resolve_jars(self.version)
        self.directory.mkdir(parents=True, exist_ok=True)
        port, cport = free_port(), free_port()
        while cport == port:
            cport = free_port()
        data = self.directory / "data"
        shutil.rmtree(data, ignore_errors=True)
        props = self.directory / "server.properties"
        props.write_text(_server_properties(port, cport, data))
        log4j = self.directory / "log4j2.properties"
        log4j.write_text(_LOG4J2_PROPERTIES)
        classpath = f"{lib}/*"
        jvm = [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if cluster_id.startswith("-"):
            cluster_id = "A" + cluster_id[1:]
        fmt = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
             "--ignore-formatted"],
            capture_output=True, text=True, check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError("Kafka's StorageTool could not format the log directory:\n"
                              + (fmt.stdout + fmt.stderr).strip()[-2000:])
        log = self.log_file.open("wb")
        proc = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(props)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.directory,
        )
        log.close()
        state = BrokerState(proc.pid, port, cport, self.version, str(self.directory))
        self._state_file.write_text(json.dumps(asdict(state)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._state_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"Kafka exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            if READY_LINE in self._log_tail(200) and _port_open(port):
                return state
            time.sleep(0.25)
        self.stop()
        raise BrokerError(f"Kafka did not start within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout``); False if none ran."""
        state = self.state()
        if state is None:
            self._state_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(state.pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(state.pid, os.WNOHANG)
            time.sleep(0.2)
        if _pid_alive(state.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(state.pid, 0)
        self._state_file.unlink(missing_ok=True)
        return True

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _server_properties(port: int, cport: int, data: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "3",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "log.retention.hours": "-1",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())
