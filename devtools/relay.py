"""The local stack's SMTP server: mail to anyone, delivered into the local Dovecot over LMTP.

Development only, on loopback. It is what the email channel of `make run` sends replies
through, and what a newcomer sends a first mail to (`support@example.com`). Every
recipient gets a mailbox: an address Dovecot does not know yet is added to the stack's
customers file (Dovecot re-reads it when it changes) with `CUSTOMER_PASSWORD`, so a reply
to any customer can be read back with IMAP. A plus-address of an account
(`support+TAG@example.com`, our Reply-To) is delivered to that account, as a mail server
with a recipient delimiter does; the headers keep the tag for the email channel to read.
Run by `switchboard stack up --with-imap` as `python -m devtools.relay CONFIG` (a JSON
file the stack writes; its path in the command line marks the process as the stack's own).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import re
import signal
import smtplib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # aiosmtpd is a development package: imported only where the relay runs
    from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["CUSTOMER_PASSWORD", "Relay", "RelayConfig", "ensure_mailbox", "mailbox_of", "main"]

# the IMAP password of every mailbox the relay creates: a demo's customers, not secrets
CUSTOMER_PASSWORD = "customer"
LMTP_SECONDS = 30.0
MAX_MESSAGE_BYTES = 25 * 1024 * 1024
_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Where to listen, where Dovecot's LMTP is, and the files that list its mail users."""

    host: str
    port: int
    lmtp_port: int
    users_file: Path
    customers_file: Path
    mail_dir: Path
    uid: int
    gid: int

    @classmethod
    def read(cls, path: Path) -> RelayConfig:
        """The config the stack wrote."""
        raw: dict[str, Any] = json.loads(path.read_text())
        return cls(host=raw["host"], port=int(raw["port"]), lmtp_port=int(raw["lmtp_port"]),
                   users_file=Path(raw["users_file"]), customers_file=Path(raw["customers_file"]),
                   mail_dir=Path(raw["mail_dir"]), uid=int(raw["uid"]), gid=int(raw["gid"]))

    def write(self, path: Path) -> None:
        """Write the config for the relay process to read."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "host": self.host, "port": self.port, "lmtp_port": self.lmtp_port,
            "users_file": str(self.users_file), "customers_file": str(self.customers_file),
            "mail_dir": str(self.mail_dir), "uid": self.uid, "gid": self.gid}, indent=2))


def _known(path: Path) -> set[str]:
    try:
        return {line.split(":", 1)[0].lower() for line in path.read_text().splitlines() if ":" in line}
    except FileNotFoundError:
        return set()


def ensure_mailbox(config: RelayConfig, address: str) -> bool:
    """Give `address` a Dovecot account unless it has one; True when one was added."""
    address = address.lower()
    if not _ADDRESS.fullmatch(address):
        raise ValueError(f"not an address this relay serves: {address!r}")
    if address in _known(config.users_file):
        return False
    with config.customers_file.open("a+") as customers:
        fcntl.flock(customers, fcntl.LOCK_EX)  # the stack's start and other deliveries
        customers.seek(0)
        if any(line.split(":", 1)[0].lower() == address for line in customers.read().splitlines()):
            return False
        customers.write(f"{address}:{{PLAIN}}{CUSTOMER_PASSWORD}:{config.uid}:{config.gid}"
                        f"::{config.mail_dir / address}\n")
    return True


def mailbox_of(config: RelayConfig, address: str) -> str:
    """The account a recipient's mail goes to: an account's plus-address is the account's."""
    local, at, domain = address.lower().rpartition("@")
    base, plus, _ = local.partition("+")
    if at and plus and f"{base}@{domain}" in _known(config.users_file) | _known(config.customers_file):
        return f"{base}@{domain}"
    ensure_mailbox(config, address)
    return address.lower()


class Relay:
    """The aiosmtpd handler: accepts any well-formed recipient, hands the mail to LMTP."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        """Accept a recipient, giving it a mailbox first."""
        try:
            account = await asyncio.to_thread(mailbox_of, self.config, address)
        except ValueError as e:
            return f"550 5.1.3 {e}"
        envelope.rcpt_tos.append(account)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Deliver to every recipient over LMTP; a refusal is passed back to the sender."""
        content = envelope.original_content or b""
        try:
            refused = await asyncio.to_thread(self._deliver, envelope.mail_from or "", envelope.rcpt_tos,
                                              content)
        except (smtplib.SMTPException, OSError) as e:
            return f"451 4.3.0 Dovecot's LMTP is not answering: {e}"
        if refused:
            return f"451 4.3.0 Dovecot refused {sorted(refused)}"
        return "250 OK delivered"

    def _deliver(self, sender: str, recipients: list[str], content: bytes) -> dict[str, Any]:
        refused: dict[str, Any] = {}
        with smtplib.LMTP("127.0.0.1", self.config.lmtp_port, timeout=LMTP_SECONDS) as lmtp:
            # one recipient per transaction: LMTP answers DATA once per recipient, and
            # smtplib reads a single answer
            for recipient in recipients:
                try:
                    lmtp.sendmail(sender, [recipient], content)
                except smtplib.SMTPRecipientsRefused as e:
                    refused |= e.recipients
                except smtplib.SMTPDataError as e:
                    refused[recipient] = (e.smtp_code, e.smtp_error)
        return refused


async def serve(config: RelayConfig) -> None:
    """Listen until SIGTERM or SIGINT."""
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    relay = Relay(config)
    server = await loop.create_server(
        lambda: SMTP(relay, hostname="switchboard-relay", data_size_limit=MAX_MESSAGE_BYTES),
        config.host, config.port)
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    print(f"relay: SMTP on {config.host}:{config.port} → LMTP 127.0.0.1:{config.lmtp_port}", flush=True)
    await stopped.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    """`python -m devtools.relay CONFIG`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m devtools.relay CONFIG.json", file=sys.stderr)
        return 2
    asyncio.run(serve(RelayConfig.read(Path(args[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
