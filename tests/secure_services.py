"""Kafka and Redis as production runs them, on loopback, for the security tests.

Each test run makes its own CA and a server certificate for 127.0.0.1 with openssl, then
starts Redis with TLS only and an ACL user (the default user off), and a one-node KRaft
Kafka whose client listener is SASL_SSL with SCRAM-SHA-512 (the user is created when the
storage is formatted) and whose authorizer denies what no ACL allows. The ACLs
docs/operators.md gives are granted over the broker's own plain-text loopback listener,
whose anonymous principal is the super user. Both services are started and stopped by
PID, from the jars and packages the local stack uses (deploy/local/install.sh).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from devtools.stack import kafka_libs
from router.kafka import client_options
from router.settings import Settings, load
from tests.clocks import real_clock_env
from tests.paths import ROOT
from tests.processes import free_port
from tests.waiting import POLL_SECONDS

KAFKA_USER = "switchboard"
REDIS_USER = "switchboard"
START_SECONDS = 60.0


@dataclass(frozen=True)
class SecureStack:
    """Where the secured services listen and the credentials and CA to reach them."""

    ca: Path
    kafka_bootstrap: str
    kafka_admin: str  # the plain-text listener of the super user, for granting ACLs
    kafka_password: str
    redis_port: int
    redis_password: str
    key_prefix: str

    def environment(self) -> dict[str, str]:
        """The SB_* variables a Switchboard process needs to use them."""
        return {
            "SB_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "SB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SB_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "SB_KAFKA_SASL_USERNAME": KAFKA_USER,
            "SB_KAFKA_SASL_PASSWORD": self.kafka_password,
            "SB_KAFKA_SSL_CAFILE": str(self.ca),
            "SB_REDIS_URL": self.redis_url(),
        }

    def redis_url(self, password: str | None = None) -> str:
        """rediss:// with the ACL user, verified against our CA."""
        secret = self.redis_password if password is None else password
        return (f"rediss://{REDIS_USER}:{secret}@127.0.0.1:{self.redis_port}/0"
                f"?ssl_ca_certs={self.ca}")

    def settings(self, **overrides: object) -> Settings:
        """Settings of a client of these services."""
        given: dict[str, object] = {
            "kafka_bootstrap": self.kafka_bootstrap, "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": KAFKA_USER,
            "kafka_sasl_password": self.kafka_password, "kafka_ssl_cafile": self.ca,
            "redis_url": self.redis_url()}
        return load(**(given | overrides))


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, f"{argv[0]} failed: {done.stdout}{done.stderr}"


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server key and certificate for 127.0.0.1 and localhost signed by it."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is missing: deploy/local/install.sh installs it"
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sb-test-ca",
          "-keyout", "ca.key", "-out", "ca.crt"], folder)
    _run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
          "-keyout", "server.key", "-out", "server.csr"], folder)
    _run([openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.crt"], folder)
    return folder / "ca.crt", folder / "server.key", folder / "server.crt"


def redis_acl(prefix: str) -> list[str]:
    """docs/operators.md's ACL rules for the Switchboard user: its keys, no admin or dangerous command."""
    return ["resetkeys", f"~{prefix}sb:*", "resetchannels", "-@all", "+@read", "+@write", "+@scripting",
            "+@transaction", "+@connection", "-@dangerous"]


def _redis_argv(folder: Path, port: int, password: str, prefix: str, cert: Path, key: Path,
                ca: Path) -> list[str]:
    server = shutil.which("redis-server", path="/usr/bin:/usr/sbin:/bin")
    assert server, "redis-server is missing: deploy/local/install.sh installs it"
    return [server, "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no", "--dir", str(folder), "--save", "", "--appendonly", "no",
            "--user", "default", "off",
            "--user", REDIS_USER, "on", f">{password}", *redis_acl(prefix)]


def _kafka_properties(folder: Path, ports: tuple[int, int, int], pem: Path) -> Path:
    client, broker, controller = ports
    props = folder / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        "controller.listener.names=CONTROLLER",
        # clients: TLS and SCRAM; the broker's own traffic stays on loopback in plain text
        f"listeners=SASL_SSL://127.0.0.1:{client},BROKER://127.0.0.1:{broker},"
        f"CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{client},BROKER://127.0.0.1:{broker}",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=BROKER",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        # nothing without an ACL, but for the broker itself (anonymous on its own listeners)
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
        "allow.everyone.if.no.acl.found=false",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={pem}",
        f"log.dirs={folder / 'data'}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # clients may run up to a week ahead under `make test-clocks`, as for the local stack
        "log.message.timestamp.after.max.ms=691200000",
        "",
    ]))
    return props


def _kafka_argv(folder: Path, password: str, cert: Path, key: Path) -> list[str]:
    libs = kafka_libs(load())
    java = shutil.which("java")
    assert java and (libs / ".installed").exists(), f"no Java or no Kafka jars in {libs}: run make setup"
    pem = folder / "server.pem"
    pem.write_text(key.read_text() + cert.read_text())
    props = _kafka_properties(folder, (free_port(), free_port(), free_port()), pem)
    # a small, short-lived broker: start fast rather than run fast
    jvm = [java, "-Xms128m", "-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", f"{libs}/*",
           f"-Dlog4j2.configurationFile={ROOT / 'deploy' / 'local' / 'log4j2.properties'}"]
    _run([*jvm, "kafka.tools.StorageTool", "format", "-t", "c2Itc2VjdXJlLXRlc3QtMQ",
          "-c", str(props), "--add-scram", f"SCRAM-SHA-512=[name={KAFKA_USER},password={password}]"], folder,
         real_clock_env())
    return [*jvm, "kafka.Kafka", str(props)]


def _listener(props: Path, name: str) -> str:
    for line in props.read_text().splitlines():
        if line.startswith("advertised.listeners="):
            return line.split(f"{name}://")[1].split(",")[0]
    raise AssertionError(f"no {name} listener")


# Kafka's protocol numbers: resource types, pattern types, operations, permission
_TOPIC, _GROUP = 2, 3
_PREFIXED = 4
_OPERATIONS = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8}
_ALLOW = 3


def documented_acls(topic_prefix: str, app_id: str) -> list[tuple[int, str, str]]:
    """docs/operators.md's ACLs for the Switchboard user: (resource type, prefix, operation)."""
    topics = [(_TOPIC, name, op) for name in (f"{topic_prefix}sb.", f"{app_id}-")
              for op in ("Create", "Describe", "Read", "Write")]
    groups = [(_GROUP, name, op) for name in (app_id, "sb-tail-") for op in ("Read", "Describe")]
    return topics + groups


async def grant(stack: SecureStack, acls: list[tuple[int, str, str]]) -> None:
    """Create prefixed ALLOW ACLs for the Switchboard user, as the super user."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import CreateAclsRequest

    client = AIOKafkaClient(bootstrap_servers=stack.kafka_admin)
    await client.bootstrap()
    try:
        for resource, name, operation in acls:
            response = await client.send(client.get_random_node(), CreateAclsRequest(
                resource, name, _PREFIXED, f"User:{KAFKA_USER}", "*", _OPERATIONS[operation], _ALLOW))
            errors = [e for e in response.creation_responses if e[0] != 0]
            assert not errors, f"ACL {operation} on {name}: {errors}"
    finally:
        await client.close()


async def _kafka_answers(settings: Settings) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=2000)
    try:
        await asyncio.wait_for(admin.start(), 3)
        await asyncio.wait_for(admin.list_topics(), 3)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


@contextmanager
def secure_stack(folder: Path, prefix: str) -> Iterator[SecureStack]:
    """Start the secured Redis and Kafka; stop exactly those processes at the end."""
    ca, key, cert = make_certificates(folder)
    stack = SecureStack(ca=ca, kafka_bootstrap="", kafka_admin="",
                        kafka_password="kafka-scram-secret-for-tests",
                        redis_port=free_port(), redis_password="redis-acl-secret-for-tests",
                        key_prefix=prefix)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (folder / "redis.log").open("ab") as log:
            procs.append(subprocess.Popen(
                _redis_argv(folder, stack.redis_port, stack.redis_password, prefix, cert, key, ca),
                stdout=log, stderr=log, cwd=folder, env=real_clock_env()))
        (folder / "kafka").mkdir()
        argv = _kafka_argv(folder / "kafka", stack.kafka_password, cert, key)
        with (folder / "kafka.log").open("ab") as log:
            procs.append(subprocess.Popen(argv, stdout=log, stderr=log, cwd=folder, env=real_clock_env()))
        props = Path(argv[-1])
        stack = SecureStack(**{**stack.__dict__, "kafka_bootstrap": _listener(props, "SASL_SSL"),
                               "kafka_admin": _listener(props, "BROKER")})
        _wait_ready(stack, procs, folder)
        yield stack
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait_ready(stack: SecureStack, procs: list[subprocess.Popen[bytes]], folder: Path) -> None:
    import time

    deadline = time.monotonic() + START_SECONDS
    settings = stack.settings()
    redis_up = kafka_up = False
    while not (redis_up and kafka_up):
        for proc, name in zip(procs, ("redis", "kafka"), strict=True):
            assert proc.poll() is None, f"{name} exited: {(folder / f'{name}.log').read_text()[-2000:]}"
        if not redis_up:
            client = redis.Redis.from_url(stack.redis_url(), socket_timeout=2)
            try:
                redis_up = client.ping() is True
            except redis.RedisError:
                pass
            finally:
                client.close()
        kafka_up = kafka_up or asyncio.run(_kafka_answers(settings))
        assert time.monotonic() < deadline, "the secured Redis or Kafka never answered"
        time.sleep(POLL_SECONDS)
