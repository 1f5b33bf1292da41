"""Kafka's TLS and SASL settings: agreeing or refused at start, one TLS context for every client."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from router.app import _credentials
from router.kafka import client_options, ssl_context
from router.settings import load
from schemas.errors import ConfigError
from tests.secure_services import make_certificates


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("ca"))[0]


def test_plaintext_has_no_tls_and_no_credentials() -> None:
    settings = load(kafka_security_protocol="PLAINTEXT")
    assert ssl_context(settings) is None
    assert _credentials(settings) is None
    assert "ssl_context" not in client_options(settings)


def test_sasl_ssl_verifies_the_brokers_against_the_ca(ca: Path) -> None:
    settings = load(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                    kafka_sasl_username="switchboard", kafka_sasl_password="secret",
                    kafka_ssl_cafile=ca)
    options = client_options(settings)
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "sb-test-ca"),),)]
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    credentials = _credentials(settings)
    # Faust derives its security protocol from the credentials: SASL with a context is SASL_SSL
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"


def test_tls_alone_gives_faust_ssl_credentials(ca: Path) -> None:
    credentials = _credentials(load(kafka_security_protocol="SSL", kafka_ssl_cafile=ca))
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol.value == "SSL"


def test_sasl_plaintext_has_credentials_without_tls() -> None:
    settings = load(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                    kafka_sasl_username="u", kafka_sasl_password="p")
    credentials = _credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert ssl_context(settings) is None


@pytest.mark.parametrize(("given", "named"), [
    ({"kafka_security_protocol": "SASL_SSL"}, "SB_KAFKA_SECURITY_PROTOCOL"),
    ({"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u"}, "SB_KAFKA_SASL_MECHANISM"),
    ({"kafka_ssl_certfile": "/tmp/client.crt"}, "SB_KAFKA_SSL_CERTFILE"),
    ({"kafka_security_protocol": "TLS"}, "SB_KAFKA_SECURITY_PROTOCOL"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "MD5", "kafka_sasl_username": "u"},
     "SB_KAFKA_SASL_MECHANISM"),
])
def test_settings_that_disagree_fail_the_start_naming_the_variable(given: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(**given)
    assert named in str(refused.value)


def test_a_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    settings = load(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "nowhere.crt")
    with pytest.raises(ConfigError, match="SB_KAFKA_SSL_CAFILE"):
        ssl_context(settings)
