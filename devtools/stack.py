"""The local stack: real Kafka, Redis and Dovecot on this machine, started and stopped by PID.

Everything lives under `settings.state_dir` (default `.local/`): generated configs, data,
`logs/<service>.log` and `run/<service>.pid`. A process counts as ours only while its
command line names the config file we generated for it, so a stale or reused PID is never
mistaken for ours, and `down` never signals anything it did not start. Kafka's controller
listens on the client port + 1. The functions block; from async code use `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

import redis

from devtools.relay import RelayConfig
from router.settings import ROOT, Settings
from schemas.errors import ConfigError, TransientError

__all__ = [
    "DEFAULT_SERVICES",
    "MAIL_SERVICES",
    "MAIL_USERS",
    "SERVICES",
    "MailUser",
    "ServiceStatus",
    "down",
    "status",
    "up",
]

SERVICES = ("kafka", "redis", "imap", "smtp")
DEFAULT_SERVICES = ("kafka", "redis")
# Dovecot and the SMTP relay that delivers into it: the local mail system
MAIL_SERVICES = ("imap", "smtp")
TEMPLATES = ROOT / "deploy" / "local"
INSTALL_HINT = "run deploy/local/install.sh"
STOP_SECONDS = 30.0
POLL_SECONDS = 0.1
PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class MailUser:
    """One mailbox of the local Dovecot."""

    address: str
    password: str = field(repr=False)


MAIL_USERS = (MailUser("support@example.com", "support-secret"),)


@dataclass(frozen=True)
class ServiceStatus:
    """One service as it is now: `running` means our process is alive and its port answers."""

    name: str
    running: bool
    pid: int | None
    address: str
    detail: str


@dataclass(frozen=True)
class _Service:
    name: str
    host: str
    ports: tuple[int, ...]  # the first is the one clients use
    config: Path  # generated; its path in the command line marks the process as ours
    argv: Callable[[], list[str]]  # writes the config, returns the command
    probe: Callable[[float], str | None]  # None when it answers, else why not
    setting: str  # where its address comes from, for error messages

    @property
    def address(self) -> str:
        """host:port clients connect to."""
        return f"{self.host}:{self.ports[0]}"


# Children started by this process: polling them reaps them, so they never linger as zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def up(
    settings: Settings,
    services: Sequence[str] = DEFAULT_SERVICES,
    *,
    timeout: float = 90.0,
    mail_users: Sequence[MailUser] = MAIL_USERS,
) -> list[ServiceStatus]:
    """Start the services not already running and wait until each truly answers."""
    specs = _services(settings, mail_users)
    unknown = sorted(set(services) - set(specs))
    if unknown:
        raise ConfigError(f"unknown service {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    deadline = time.monotonic() + timeout
    with _locked(settings):
        # start them all before waiting on any, so they boot side by side
        pids = {name: _our_pid(settings, specs[name]) or _start(settings, specs[name])
                for name in services}
        return [_wait_ready(settings, specs[name], pids[name], deadline, timeout)
                for name in services]


def down(settings: Settings) -> list[ServiceStatus]:
    """Stop the processes this stack started (SIGTERM, then SIGKILL at the deadline)."""
    specs = _services(settings, MAIL_USERS)
    with _locked(settings):
        pids = {name: _our_pid(settings, svc) for name, svc in specs.items()}
        for pid in pids.values():
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for name, pid in pids.items():
            if pid is not None and not _wait_exit(specs[name], pid, deadline):
                # the whole session: Dovecot's children must not outlive their master
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                _wait_exit(specs[name], pid, time.monotonic() + STOP_SECONDS)
            _pid_file(settings, name).unlink(missing_ok=True)
    return status(settings)


def status(settings: Settings) -> list[ServiceStatus]:
    """Each service's truth: our live process, its address, and whether the port answers."""
    return [_status_of(settings, svc) for svc in _services(settings, MAIL_USERS).values()]


def _status_of(settings: Settings, svc: _Service) -> ServiceStatus:
    pid = _our_pid(settings, svc)
    why = svc.probe(PROBE_SECONDS)
    if pid is None:
        detail = "not running" if why else "not running; its port answers for a process not ours"
        return ServiceStatus(svc.name, False, None, svc.address, detail)
    detail = "answers" if why is None else f"alive but not answering: {why}"
    return ServiceStatus(svc.name, why is None, pid, svc.address, detail)


# --- processes ----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """Serialise up/down across processes sharing a state dir."""
    run = settings.state_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    with (run / "stack.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.state_dir / "run" / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    return settings.state_dir / "logs" / f"{name}.log"


def _is_ours(svc: _Service, pid: int) -> bool:
    """Alive and started by us: a zombie's command line is empty, a stranger's names no config."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            # trust our own child: while it execs, its command line can still read empty
            return isinstance(child.args, list) and str(svc.config) in child.args
        del _CHILDREN[pid]
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(svc.config) in argv


def _our_pid(settings: Settings, svc: _Service) -> int | None:
    try:
        pid = int(_pid_file(settings, svc.name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_ours(svc, pid) else None


def _start(settings: Settings, svc: _Service) -> int:
    for port in svc.ports:
        if _tcp(svc.host, port, PROBE_SECONDS) is None:
            raise ConfigError(f"{svc.host}:{port} is taken by a process this stack did not start",
                              where=svc.setting)
    argv = svc.argv()
    log = _log_file(settings, svc.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists():
        log.replace(log.with_suffix(".log.1"))  # keep the previous run's log for post-mortems
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                cwd=svc.config.parent, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    _pid_file(settings, svc.name).write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_ready(settings: Settings, svc: _Service, pid: int, deadline: float,
                timeout: float) -> ServiceStatus:
    log = _log_file(settings, svc.name)
    while True:
        why = svc.probe(max(0.2, min(PROBE_SECONDS, deadline - time.monotonic())))
        if why is None:
            return ServiceStatus(svc.name, True, pid, svc.address, "answers")
        if not _is_ours(svc, pid):
            _pid_file(settings, svc.name).unlink(missing_ok=True)
            raise TransientError(f"{svc.name} exited while starting; {_tail(log)}")
        if time.monotonic() >= deadline:
            raise TransientError(
                f"{svc.name} (pid {pid}) did not answer on {svc.address} within {timeout:g}s"
                f" ({why}); {_tail(log)}")
        time.sleep(POLL_SECONDS)


def _wait_exit(svc: _Service, pid: int, deadline: float) -> bool:
    while _is_ours(svc, pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def _tail(log: Path, lines: int = 20) -> str:
    try:
        last = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError as e:
        return f"no log at {log} ({e.strerror})"
    return f"last lines of {log}:\n" + "\n".join(last)


def _run(argv: list[str], where: Path) -> str:
    """Run a set-up step to completion; its failure is a broken installation."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise ConfigError(f"{argv[-1]} failed ({done.returncode}):\n{output}", where=str(where))
    return done.stdout


def _which(program: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise ConfigError(f"{program} is not installed; {INSTALL_HINT}")
    return found


def _render(template: str, target: Path, **values: object) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    text = Template((TEMPLATES / template).read_text()).substitute(values)
    target.write_text(text)
    return target


# --- probes -------------------------------------------------------------------------------


def _tcp(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"connect: {e.strerror or e}"


def _greeting(host: str, port: int, timeout: float, expected: bytes) -> str | None:
    """Connect and read the first line: IMAP greets with `* OK`, LMTP with `220`."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            line = conn.makefile("rb").readline(512)
    except OSError as e:
        return f"port {port}: {e.strerror or e}"
    return None if line.startswith(expected) else f"port {port} greeted {line[:60]!r}"


def _kafka_probe(host: str, port: int, timeout: float) -> str | None:
    # a cheap connect first keeps aiokafka from logging every refused attempt
    why = _tcp(host, port, timeout)
    return why if why is not None else asyncio.run(_kafka_metadata(f"{host}:{port}", timeout))


async def _kafka_metadata(bootstrap: str, timeout: float) -> str | None:
    """A real metadata request: the broker answers and lists itself."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        brokers = len(client.cluster.brokers())
    except (KafkaError, OSError, TimeoutError) as e:
        return f"metadata: {e!r}"
    finally:
        await client.close()
    return None if brokers else "metadata lists no broker yet"


def _redis_probe(dsn: str, timeout: float) -> str | None:
    client = redis.Redis.from_url(dsn, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return None if client.ping() is True else "PING got no PONG"
    except redis.RedisError as e:
        return f"PING: {e}"
    finally:
        client.close()


# --- the services -------------------------------------------------------------------------


def _services(settings: Settings, users: Sequence[MailUser]) -> dict[str, _Service]:
    state = settings.state_dir.resolve()
    kafka_host, kafka_port = _kafka_address(settings)
    redis_url = urlsplit(settings.redis_dsn)
    redis_host = _loopback(redis_url.hostname or "127.0.0.1", "environment SB_REDIS_URL")
    redis_port = redis_url.port or 6379
    kafka = _Service(
        "kafka", kafka_host, (kafka_port, kafka_port + 1), state / "kafka" / "server.properties",
        lambda: _kafka_argv(settings, state, kafka_host, kafka_port),
        lambda t: _kafka_probe(kafka_host, kafka_port, t), "environment SB_KAFKA_BOOTSTRAP")
    redis_ = _Service(
        "redis", redis_host, (redis_port,), state / "redis" / "redis.conf",
        lambda: _redis_argv(settings, state, redis_host, redis_port),
        lambda t: _redis_probe(settings.redis_dsn, t), "environment SB_REDIS_URL")
    ports = (settings.imap_port, settings.lmtp_port)
    imap = _Service(
        "imap", "127.0.0.1", ports, state / "imap" / "dovecot.conf",
        lambda: _imap_argv(state, ports, users),
        lambda t: _greeting("127.0.0.1", ports[0], t, b"* OK")
        or _greeting("127.0.0.1", ports[1], t, b"220 "),
        "environment SB_IMAP_PORT / SB_LMTP_PORT")
    smtp = _Service(
        "smtp", "127.0.0.1", (settings.smtp_port,), state / "smtp" / "relay.json",
        lambda: _smtp_argv(state, settings),
        lambda t: _greeting("127.0.0.1", settings.smtp_port, t, b"220 "), "environment SB_SMTP_PORT")
    return {"kafka": kafka, "redis": redis_, "imap": imap, "smtp": smtp}


def _loopback(host: str, where: str) -> str:
    """The stack listens on loopback only; an address elsewhere is not one it can serve."""
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return host
    if host == "localhost":
        return "127.0.0.1"
    raise ConfigError(f"the local stack listens on loopback only, not on {host}", where=where)


def _kafka_address(settings: Settings) -> tuple[str, int]:
    where = "environment SB_KAFKA_BOOTSTRAP"
    if settings.kafka_security_protocol != "PLAINTEXT":
        raise ConfigError("the local stack serves PLAINTEXT only",
                          where="environment SB_KAFKA_SECURITY_PROTOCOL")
    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"expected host:port, got {settings.kafka_bootstrap!r}", where=where)
    return _loopback(host.strip("[]"), where), int(port)


def kafka_libs(settings: Settings) -> Path:
    """The Kafka jars a stack runs: SB_KAFKA_LIBS, else its state dir's own, else the checkout's cache.

    The same places, in the same order, as deploy/local/install.sh: a stack with a private
    state dir shares the jars already fetched instead of needing its own.
    """
    places = ([settings.kafka_libs] if settings.kafka_libs is not None
              else [settings.state_dir / "kafka" / "libs", ROOT / ".local" / "kafka" / "libs"])
    for libs in places:
        if (libs / ".installed").exists():
            return libs
    raise ConfigError(f"no Kafka jars in {' or '.join(map(str, places))}; {INSTALL_HINT}")


def _kafka_argv(settings: Settings, state: Path, host: str, port: int) -> list[str]:
    libs = kafka_libs(settings)
    data = state / "kafka" / "data"
    props = _render("server.properties.in", state / "kafka" / "server.properties",
                    host=host, port=port, controller_port=port + 1, data_dir=data,
                    partitions=settings.kafka_partitions)
    jvm = [_which("java"), "-cp", f"{libs}/*",
           f"-Dlog4j2.configurationFile={TEMPLATES / 'log4j2.properties'}"]
    if not (data / "meta.properties").exists():
        # KRaft storage is formatted once, with a cluster id made by Kafka's own tool
        out = _run([*jvm, "kafka.tools.StorageTool", "random-uuid"], props).split()
        cluster_id = out[-1] if out and re.fullmatch(r"[\w-]{22}", out[-1]) else None
        if cluster_id is None:
            raise ConfigError(f"StorageTool random-uuid printed {out[-5:]!r}", where=str(props))
        _run([*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
             props)
    return [jvm[0], "-Xms256m", "-Xmx1g", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true", *jvm[1:], "kafka.Kafka", str(props)]


def _redis_argv(settings: Settings, state: Path, host: str, port: int) -> list[str]:
    data = state / "redis" / "data"
    data.mkdir(parents=True, exist_ok=True)
    password = urlsplit(settings.redis_dsn).password
    escaped = (password or "").replace("\\", "\\\\").replace('"', '\\"')
    conf = _render("redis.conf.in", state / "redis" / "redis.conf", host=host, port=port,
                   data_dir=data, requirepass=f'requirepass "{escaped}"' if password else "")
    return [_which("redis-server"), str(conf)]


def _mail_owner() -> tuple[pwd.struct_passwd, dict[str, str]]:
    """Who owns the mailboxes, and the accounts Dovecot's own processes run as."""
    me = pwd.getpwuid(os.geteuid())
    if me.pw_uid == 0:
        # Dovecot never gives root mail access: the mailboxes belong to `nobody`, and
        # Dovecot's own system users run its internal and (chrooted) login processes
        return pwd.getpwnam("nobody"), {
            "internal_user": "dovecot", "internal_group": "dovecot",
            "login_user": "dovenull", "login_chroot": "login", "anvil_chroot": "empty"}
    # rootless: everything runs as the caller, and only root may chroot
    return me, {"internal_user": me.pw_name, "internal_group": grp.getgrgid(me.pw_gid).gr_name,
                "login_user": me.pw_name, "login_chroot": "", "anvil_chroot": ""}


def _imap_argv(state: Path, ports: tuple[int, int], users: Sequence[MailUser]) -> list[str]:
    home = state / "imap"
    mail = home / "mail"
    for folder in (home / "run", home / "lib", mail):
        folder.mkdir(parents=True, exist_ok=True)
    owner, accounts = _mail_owner()
    os.chown(mail, owner.pw_uid, owner.pw_gid)
    users_file = home / "users"
    lines = []
    for user in users:
        if any(c in user.address + user.password for c in ":\n"):
            raise ConfigError(f"mail user {user.address!r}: no ':' or newline allowed")
        lines.append(f"{user.address}:{{PLAIN}}{user.password}:{owner.pw_uid}:{owner.pw_gid}"
                     f"::{mail / user.address}\n")
    users_file.write_text("".join(lines))
    # mailboxes the SMTP relay created for customers; kept across restarts
    customers_file = home / "customers"
    customers_file.touch()
    for listed in (users_file, customers_file):
        listed.chmod(0o644)  # Dovecot's auth process reads them as its internal user
    conf = _render("dovecot.conf.in", home / "dovecot.conf", instance="switchboard",
                   base_dir=home / "run", lib_dir=home / "lib", host="127.0.0.1", mail_dir=mail,
                   users_file=users_file, customers_file=customers_file, imap_port=ports[0],
                   lmtp_port=ports[1], **accounts)
    return [_which("dovecot"), "-F", "-c", str(conf)]


def _smtp_argv(state: Path, settings: Settings) -> list[str]:
    home = state / "imap"
    owner, _ = _mail_owner()
    (home / "customers").touch()
    config = RelayConfig(host="127.0.0.1", port=settings.smtp_port, lmtp_port=settings.lmtp_port,
                         users_file=home / "users", customers_file=home / "customers",
                         mail_dir=home / "mail", uid=owner.pw_uid, gid=owner.pw_gid)
    path = state / "smtp" / "relay.json"
    config.write(path)
    # by path: the relay needs nothing of this project, so any checkout's copy runs as itself
    return [sys.executable, str(ROOT / "devtools" / "relay.py"), str(path)]
