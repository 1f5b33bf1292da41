"""Settings of the email channel: IMAP mailboxes to read, one SMTP server to answer through.

Mounted into the main Settings as `email` (env `SB_EMAIL__...` or JSON); passwords and the
token key are `SecretStr`, so every repr, log line and diagnostic shows `**********`.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    field_validator,
    model_validator,
)

__all__ = ["EmailSettings", "ImapAccount", "SmtpSettings", "TlsMode", "tls_context"]

TlsMode = Literal["none", "starttls", "implicit"]

# IMAP names travel as modified UTF-7 and quoted strings; we send printable ASCII only
_MAILBOX = re.compile(r'^[ !#-\[\]-~]{1,200}$')
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+$")


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client TLS context, trusting `ca_file` instead of the system CAs if given."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


class _Frozen(BaseModel):
    # a model-level error would otherwise print the whole input, passwords included
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class ImapAccount(_Frozen):
    """One mailbox the channel reads, and how to reach it."""

    # short and unique: names the cursor key, the metrics and the logs
    name: str
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    username: str
    password: SecretStr
    mailbox: str = "INBOX"
    tls: TlsMode = "implicit"
    # None: use IDLE when the server offers it; False: always poll
    idle: bool | None = None
    poll_seconds: float = Field(default=30.0, gt=0)
    # servers drop an IDLE after 29 minutes (RFC 2177); re-issue it before that
    idle_renew_seconds: float = Field(default=25 * 60.0, gt=0, le=29 * 60.0)
    fetch_batch: int = Field(default=100, ge=1, le=10_000)
    mark_seen: bool = False
    move_to: str | None = None
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # applies to every network await: connect, each command, each read of a fetch
    timeout: float = Field(default=30.0, gt=0)
    # PEM bundle of the CAs to trust instead of the system's (a private CA)
    tls_ca_file: FilePath | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '.', '-' (at most 64)")
        return value

    @field_validator("password")
    @classmethod
    def _one_line(cls, value: SecretStr) -> SecretStr:
        if re.search(r"[\r\n\x00]", value.get_secret_value()):
            raise ValueError("no CR, LF or NUL in a password")
        return value

    @field_validator("mailbox", "move_to")
    @classmethod
    def _ascii_mailbox(cls, value: str | None) -> str | None:
        if value is not None and not _MAILBOX.match(value):
            raise ValueError("mailbox names must be printable ASCII without '\"' or '\\'")
        return value


class SmtpSettings(_Frozen):
    """The server replies go out through, and what our mail says about itself."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    tls: TlsMode = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str
    from_name: str = "Support"
    # right-hand side of our Message-IDs: `<sb.TOKEN.NONCE@message_id_domain>`
    message_id_domain: str
    timeout: float = Field(default=30.0, gt=0)
    tls_ca_file: FilePath | None = None
    max_attempts: int = Field(default=5, ge=1, le=50)
    # replies in flight at once, one SMTP connection each (opened when first needed)
    connections: int = Field(default=4, ge=1, le=32)
    backoff_base_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=60.0, ge=0)
    # keep a copy of every reply in an IMAP folder, as mail clients do
    append_sent: bool = False
    sent_folder: str = "Sent"
    # name of the ImapAccount to append with; None means the first account
    append_account: str | None = None

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError("expected an address like support@example.com")
        if "+" in value.rpartition("@")[0]:
            raise ValueError("no '+' in the local part: replies tag it with +TOKEN")
        return value

    @field_validator("message_id_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", value):
            raise ValueError("expected a domain name like example.com")
        return value

    @field_validator("sent_folder")
    @classmethod
    def _ascii_folder(cls, value: str) -> str:
        if not _MAILBOX.match(value):
            raise ValueError("mailbox names must be printable ASCII without '\"' or '\\'")
        return value

    @model_validator(mode="after")
    def _login_pair(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")
        return self


class EmailSettings(_Frozen):
    """Everything the email channel needs: mailboxes in, SMTP out, the reply-token key."""

    accounts: tuple[ImapAccount, ...] = ()
    smtp: SmtpSettings | None = None
    # HMAC key of the reply tokens (schemas/tokens.py) in our Message-IDs and Reply-To
    token_key: SecretStr
    # mail is parsed in this many worker processes; a mail that needs more CPU time than
    # parse_cpu_seconds is dead-lettered (a 25 MB mail takes about 1 s)
    parse_workers: int = Field(default=1, ge=1, le=16)
    parse_cpu_seconds: float = Field(default=10.0, gt=0, le=600)
    # where the synthetic probe mails to: an address whose mail lands in a mailbox read
    # here; None: the first account whose login is an address
    probe_to: str | None = None

    @field_validator("probe_to")
    @classmethod
    def _probe_address(cls, value: str | None) -> str | None:
        if value is not None and not _ADDRESS.match(value):
            raise ValueError("expected an address like support@example.com")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [a.name for a in self.accounts]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"account names must be unique: {', '.join(doubled)}")
        if not self.token_key.get_secret_value():
            raise ValueError("token_key is empty")
        if self.smtp is not None and self.smtp.append_sent:
            wanted = self.smtp.append_account
            if not self.accounts:
                raise ValueError("smtp.append_sent needs an IMAP account to append with")
            if wanted is not None and wanted not in names:
                raise ValueError(f"smtp.append_account {wanted!r} is not one of: {', '.join(names)}")
        return self

    def sent_account(self) -> ImapAccount | None:
        """The IMAP account replies are appended with, or None when nothing is appended."""
        if self.smtp is None or not self.smtp.append_sent or not self.accounts:
            return None
        wanted = self.smtp.append_account
        return next((a for a in self.accounts if wanted in (None, a.name)), None)
