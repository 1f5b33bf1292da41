"""One SMTP client for every mail we send: connect, log in, and what the server's words mean.

Replies to customers (outbound.py) keep one connection open; team-mailbox forwards
(mailbox.py) open one per mail. Both connect here and classify errors the same way:
4xx and network trouble are worth another try, 5xx is final, a refused login is AuthError.
"""

from __future__ import annotations

import aiosmtplib

from connectors.email.errors import SmtpRejected, SmtpTransient
from connectors.email.settings import SmtpSettings, tls_context
from schemas.errors import AuthError, SwitchboardError

__all__ = ["NETWORK", "classified", "connect", "where"]

NETWORK = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError,
           aiosmtplib.SMTPTimeoutError, OSError, TimeoutError)


def where(smtp: SmtpSettings) -> str:
    """`SMTP host:port`, how every error names the server."""
    return f"SMTP {smtp.host}:{smtp.port}"


async def connect(smtp: SmtpSettings) -> aiosmtplib.SMTP:
    """A connected, logged-in client; errors are already in our tree."""
    password = smtp.password.get_secret_value() if smtp.password else None
    client = aiosmtplib.SMTP(
        hostname=smtp.host, port=smtp.port, timeout=smtp.timeout,
        use_tls=smtp.tls == "implicit", start_tls=smtp.tls == "starttls",
        tls_context=tls_context(smtp.tls_ca_file) if smtp.tls != "none" else None,
        username=smtp.username, password=password, local_hostname=smtp.message_id_domain)
    try:
        await client.connect()
    except aiosmtplib.SMTPAuthenticationError as e:
        raise AuthError(f"{where(smtp)}: login as {smtp.username!r} refused: {e.code} {e.message}") from e
    except aiosmtplib.SMTPResponseException as e:
        raise classified(e, f"{where(smtp)}: connect") from e
    except (aiosmtplib.SMTPException, *NETWORK) as e:
        raise SmtpTransient(f"{where(smtp)}: connect: {e!r}") from e
    return client


def classified(e: aiosmtplib.SMTPResponseException, step: str) -> SwitchboardError:
    """4xx is worth another try, anything else the server said is final."""
    reason = f"{step}: {e.code} {e.message}"
    if 400 <= e.code < 500:
        return SmtpTransient(reason, e.code)
    return SmtpRejected(reason, e.code)
