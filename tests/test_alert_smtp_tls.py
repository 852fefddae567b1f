"""Alert email over STARTTLS and implicit TLS, with a login, to a real SMTP server on loopback."""

import datetime
import ipaddress
import smtplib
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.postgres import free_port
from tests.support.receivers import Mailbox
from visionwatch.alert_rules import Rule
from visionwatch.alerts import notify
from visionwatch.config import Settings

NOW = datetime.datetime(2026, 11, 26, 12, tzinfo=datetime.UTC)


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "visionwatch test SMTP")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.pem", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"alerts", b"s3cret")
    return AuthResult(success=ok)


def body() -> dict[str, Any]:
    rule = Rule("tls", "avg_confidence", "below", 0.5, model="cam/1")
    settings = Settings()
    return notify.payload(
        settings,
        kind="firing",
        rule_id=1,
        rule=rule,
        workspace="acme",
        value=0.2,
        baseline=None,
        window=(NOW, NOW),
        now=NOW,
    )


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_goes_out_encrypted_with_a_login(tmp_path: Path, security: str) -> None:
    cert, key = certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox, port = Mailbox(), free_port()
    # The client below always encrypts; the server need not insist.
    options: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": False}
    if security == "tls":
        options["ssl_context"] = context
    else:
        options.update(tls_context=context, require_starttls=True)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        settings = Settings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security=security,
            smtp_user="alerts",
            smtp_password="s3cret",
            smtp_ca_file=cert,
            smtp_timeout_seconds=3,
        )
        notify.send_email(settings, "ops@example.com", body())
        assert mailbox.wait_for(1)
        assert mailbox.messages[0]["Subject"] == "[visionwatch] FIRING: tls"
        wrong = settings.model_copy(update={"smtp_password": "guess"})
        with pytest.raises(smtplib.SMTPException):
            notify.send_email(wrong, "ops@example.com", body())
        untrusted = settings.model_copy(update={"smtp_ca_file": None})
        with pytest.raises(ssl.SSLError):
            notify.send_email(untrusted, "ops@example.com", body())
        assert len(mailbox.messages) == 1
    finally:
        controller.stop()
