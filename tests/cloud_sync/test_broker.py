"""LocalBroker against a real mosquitto: the properties the cloud-sync fault tests build on.

If these fail, every higher-level sync test would fail in confusing ways: a broker that changes port on
restart, loses persistent sessions because it dropped privileges, or accepts clients it should refuse.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cloud_sync.broker import BrokerError, BrokerTls, LocalBroker, free_port
from cloud_sync.tls import Pki, make_test_pki
from cryptography import x509

if TYPE_CHECKING:
    from tests.cloud_sync.conftest import BrokerFactory, ProbeFactory

# MQTT 5 reason codes (decimal) the broker answers with.
NOT_AUTHORIZED = 135
PACKET_TOO_LARGE = 149


def wait_for_saved(db: Path, needle: bytes, timeout: float = 10.0) -> bool:
    """True once mosquitto's database file holds ``needle`` (payloads are stored verbatim).

    mosquitto writes the database to a new file and renames it, so a read never sees a half-written one.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if needle in db.read_bytes():
                return True
        time.sleep(0.05)
    return False


def test_publish_subscribe_round_trip(broker: LocalBroker, make_probe: ProbeFactory) -> None:
    sub = make_probe("sub")
    sub.connect(broker.host, broker.port)
    assert sub.wait_connected()
    sub.subscribe("menwei/test/#")
    pub = make_probe("pub")
    pub.connect(broker.host, broker.port)
    assert pub.wait_connected()
    mid = pub.publish("menwei/test/hello", b"hi", qos=1)
    assert pub.wait_published(mid)
    assert sub.wait_messages()
    assert sub.messages[0].topic == "menwei/test/hello"
    assert sub.messages[0].payload == b"hi"


def test_config_keeps_persistence_writable_as_root(broker: LocalBroker) -> None:
    conf = broker.conf_path.read_text()
    assert f"listener {broker.port} 127.0.0.1" in conf
    assert "persistence true" in conf
    assert ("user root" in conf) == (os.geteuid() == 0)


def test_kill_and_start_keep_the_port_and_clients_reconnect(
    broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    port = broker.port
    client = make_probe("gw", keepalive=5)
    client.connect(broker.host, broker.port)
    assert client.wait_connected()

    pid = broker.pid
    broker.kill()
    assert broker.pid is None  # reaped: not running
    assert client.wait_disconnected()

    broker.start()
    assert broker.is_running
    assert broker.port == port
    assert broker.pid != pid
    # paho reconnects to the same address by itself: the port did not move.
    assert client.wait_connected(count=2)

    broker.restart()
    assert broker.port == port
    assert client.wait_connected(count=3)


DELTA_TOPIC = "menwei/v1/site/gw/acl/delta"


def _subscribe_persistent_session_and_leave(broker: LocalBroker, make_probe: ProbeFactory) -> None:
    sub = make_probe("gw-persistent", clean_start=False, session_expiry=3600)
    sub.connect(broker.host, broker.port)
    assert sub.wait_connected()
    sub.subscribe(DELTA_TOPIC, qos=1)
    sub.close()


def _publish_delta(broker: LocalBroker, make_probe: ProbeFactory) -> None:
    cloud = make_probe("cloud")
    cloud.connect(broker.host, broker.port)
    assert cloud.wait_connected()
    mid = cloud.publish(DELTA_TOPIC, b"delta-1", qos=1)
    assert cloud.wait_published(mid)  # PUBACK: the broker has queued it for the offline session
    cloud.close()


def _assert_session_restored(broker: LocalBroker, make_probe: ProbeFactory) -> None:
    again = make_probe("gw-persistent", clean_start=False, session_expiry=3600)
    again.connect(broker.host, broker.port)
    assert again.wait_connected()
    assert again.connacks[0][1], "session_present is false: the broker lost the persistent session"
    assert again.wait_messages()
    assert again.messages[0].topic == DELTA_TOPIC
    assert again.messages[0].payload == b"delta-1"
    assert again.messages[0].qos == 1


def test_persistent_session_and_queued_message_survive_restart(
    broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    _subscribe_persistent_session_and_leave(broker, make_probe)
    _publish_delta(broker, make_probe)

    broker.restart()  # SIGTERM: mosquitto saves its database on the way out

    _assert_session_restored(broker, make_probe)


def test_queued_message_survives_a_crash_with_autosave_on_changes(
    make_broker: BrokerFactory, make_probe: ProbeFactory
) -> None:
    broker = make_broker(autosave_interval=1, autosave_on_changes=True)
    _subscribe_persistent_session_and_leave(broker, make_probe)
    _publish_delta(broker, make_probe)
    # mosquitto saves on its next loop turn after the change, not before the PUBACK.
    assert wait_for_saved(broker.db_path, b"delta-1")

    broker.kill()  # SIGKILL: nothing is saved on the way out
    broker.start()

    _assert_session_restored(broker, make_probe)


def test_mutual_tls_accepts_a_client_certificate_and_refuses_none(
    make_broker: BrokerFactory, make_probe: ProbeFactory, pki: Pki
) -> None:
    broker = make_broker(tls=BrokerTls(pki.ca_cert, pki.server.cert, pki.server.key))
    assert broker.tls_port is not None
    assert broker.tls_port != broker.port

    good = make_probe("gw-1", ca=pki.ca_cert, cert=pki.clients["gw-1"])
    good.connect("localhost", broker.tls_port)  # the server certificate names localhost and 127.0.0.1
    assert good.wait_connected()

    anonymous = make_probe("no-cert", ca=pki.ca_cert)
    try:
        anonymous.connect(broker.host, broker.tls_port)
    except OSError:  # ssl.SSLError is an OSError: refused during the handshake (TLS 1.2)
        pass
    else:
        # With TLS 1.3 the client finishes its side of the handshake first, then the broker's alert arrives.
        assert anonymous.wait_disconnected()
    assert anonymous.successful_connects == 0


def test_tls_identity_as_username_skips_the_password(
    make_broker: BrokerFactory, make_probe: ProbeFactory, pki: Pki
) -> None:
    broker = make_broker(
        allow_anonymous=False,
        users={"alice": "s3cret"},
        tls=BrokerTls(pki.ca_cert, pki.server.cert, pki.server.key, use_identity_as_username=True),
    )
    assert broker.tls_port is not None
    client = make_probe("gw-1", ca=pki.ca_cert, cert=pki.clients["gw-1"])
    client.connect(broker.host, broker.tls_port)
    assert client.wait_connected()


def test_password_file_refuses_a_wrong_password_and_anonymous(
    make_broker: BrokerFactory, make_probe: ProbeFactory
) -> None:
    broker = make_broker(allow_anonymous=False, users={"gw-1": "right horse", "cloud": "battery"})
    assert "right horse" not in broker.passwd_path.read_text()

    good = make_probe("good", username="gw-1", password="right horse")
    good.connect(broker.host, broker.port)
    assert good.wait_connected()

    for client_id, user, password in [("bad", "gw-1", "wrong"), ("anon", None, None)]:
        refused = make_probe(client_id, username=user, password=password)
        refused.connect(broker.host, broker.port)
        assert refused.wait_connack()
        reason, _ = refused.connacks[0]
        assert reason.value == NOT_AUTHORIZED, reason
        assert refused.successful_connects == 0


def test_max_packet_size_disconnects_an_oversize_publish(
    make_broker: BrokerFactory, make_probe: ProbeFactory
) -> None:
    broker = make_broker(max_packet_size=2048)
    client = make_probe("big")
    client.connect(broker.host, broker.port)
    assert client.wait_connected()

    mid = client.publish("menwei/test/small", b"x" * 1000, qos=1)
    assert client.wait_published(mid)

    client.publish("menwei/test/big", b"x" * 4096, qos=1)
    assert client.wait_disconnected()
    assert client.disconnects[0].value == PACKET_TOO_LARGE, client.disconnects[0]


def test_start_failure_reports_the_log(make_broker: BrokerFactory) -> None:
    broker = make_broker(start=False, extra_config="no_such_option true")
    with pytest.raises(BrokerError, match="no_such_option"):
        broker.start()
    assert not broker.is_running


def test_start_failure_when_the_port_is_taken(make_broker: BrokerFactory) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = make_broker(start=False, port=port, start_timeout=5.0)
        with pytest.raises(BrokerError, match="exited"):
            broker.start()


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with LocalBroker(tmp_path / "b", port=free_port(), persistence=False) as b:
        assert b.pid is not None
        with socket.create_connection((b.host, b.port), timeout=5):
            pass
    assert not b.is_running
    b.stop()  # idempotent


def test_make_test_pki_writes_usable_files(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki", clients=["gw-7"])
    assert set(pki.clients) == {"gw-7"}
    for key in (pki.ca_key, pki.server.key, pki.clients["gw-7"].key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    server = x509.load_pem_x509_certificate(pki.server.cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    client = x509.load_pem_x509_certificate(pki.clients["gw-7"].cert.read_bytes())
    assert client.issuer == server.issuer
    cn = client.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "gw-7"
    with pytest.raises(ValueError, match="file name"):
        make_test_pki(tmp_path / "bad", clients=["../evil"])
