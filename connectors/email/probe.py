"""The email channel's synthetic probe: a marked mail over SMTP to the mailbox we read.

Once routed, the probe's mail is deleted from the mailboxes we read (found by its
Message-ID, which carries the probe's id), so a probe a minute does not fill the
support mailbox. A silent probe's mail stays, for an operator to look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from connectors.base import Probe, ProbeTarget
from connectors.email.imap import ImapSession
from connectors.email.settings import EmailSettings, ImapAccount, SmtpSettings
from connectors.email.smtp import NETWORK, connect, where
from schemas.errors import TransientError

__all__ = ["EmailProbe", "probe"]


class EmailProbe(Probe):
    """Mails `to` (an address that lands in a mailbox the channel reads) through our SMTP server."""

    def __init__(self, smtp: SmtpSettings, to: str, accounts: Sequence[ImapAccount] = ()) -> None:
        self.smtp = smtp
        self.to = to
        self.accounts = tuple(accounts)

    async def send(self, probe_id: str, text: str) -> None:
        """One probe mail, its own connection: probes are minutes apart."""
        mail = EmailMessage()
        mail["From"] = f"Switchboard probe <{self.smtp.from_address}>"
        mail["To"] = self.to
        mail["Subject"] = f"Switchboard probe {probe_id}"
        mail["Message-ID"] = f"<{probe_id}@{self.smtp.message_id_domain}>"
        mail.set_content(f"A synthetic probe: it times this mailbox's path to routing.\n{text}\n")
        client = await connect(self.smtp)
        try:
            await client.send_message(mail)
        except (aiosmtplib.SMTPException, *NETWORK) as e:
            raise TransientError(f"{where(self.smtp)} did not take the probe: {e}") from e
        finally:
            if client.is_connected:
                client.close()

    async def remove(self, probe_id: str) -> None:
        """Delete the routed probe's mail wherever we read it: the mailbox, and where mail is moved."""
        for account in self.accounts:
            session = ImapSession(account)
            try:
                await session.open()
                for mailbox in dict.fromkeys((account.mailbox, account.move_to or account.mailbox)):
                    await session.select(mailbox)
                    uids = await session.with_message_id(probe_id)
                    if uids:
                        await session.delete(uids)
            finally:
                await session.close()


def probe(settings: EmailSettings, target: ProbeTarget) -> Probe | None:
    """The probe of these settings: it needs SMTP and an account whose login is its address."""
    to = settings.probe_to or next((a.username for a in settings.accounts if "@" in a.username), None)
    if settings.smtp is None or to is None:
        return None
    return EmailProbe(settings.smtp, to, settings.accounts)
