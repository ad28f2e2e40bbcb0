"""paho-mqtt plumbing shared by the ``mqtt`` sink and the lake-side collector.

One place builds an MQTT 5 client from a :class:`BrokerConfig` (TLS, user name,
password) and maps paho's and the broker's failures into the project's errors,
each naming the broker, the user and the key to fix. Importing this module
imports paho (~20 MiB): only the mqtt sink and ``edge-agent collect`` do.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config_mqtt import BrokerConfig
from edge_agent.errors import EdgeAgentError, TerminalError, TransientError
from edge_agent.shippers.paho_speed import speed_up_properties

KEEPALIVE = 60
# CONNACK / DISCONNECT / PUBACK / SUBACK reason codes (MQTT 5, section 2.4).
NO_MATCHING_SUBSCRIBERS = 16
CLIENT_ID_NOT_VALID = 133
BAD_USER_OR_PASSWORD = 134
NOT_AUTHORIZED = 135
BAD_AUTH_METHOD = 140
SESSION_TAKEN_OVER = 142
TOPIC_NAME_INVALID = 144
PACKET_TOO_LARGE = 149
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 158


def new_client(
    broker: BrokerConfig, client_id: str, manual_ack: bool = False, reconnect: bool = False
) -> mqtt.Client:
    """An MQTT 5 client that never reconnects by itself (the caller decides when), unless
    ``reconnect``: then paho's network thread does, with its backoff."""
    speed_up_properties()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=reconnect,
        manual_ack=manual_ack,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password or None)
    if broker.tls:
        client.tls_set_context(tls_context(broker))
    return client


def tls_context(broker: BrokerConfig) -> ssl.SSLContext:
    """TLS 1.2+, the broker's certificate checked against ca_file (or the system's CAs)
    and its host name; a client certificate when cert_file/key_file are set."""
    s = broker.section
    try:
        context = ssl.create_default_context(cafile=str(broker.ca_file) if broker.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TerminalError(
            f"{s}.ca_file {str(broker.ca_file)!r}: cannot load it ({exc}): "
            "give the PEM file of the CA that signed the broker's "
            "certificate"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.sslsocket_class = _ClosingSSLSocket
    if broker.cert_file is not None and broker.key_file is not None:
        try:
            context.load_cert_chain(str(broker.cert_file), str(broker.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise TerminalError(
                f"{s}.cert_file {str(broker.cert_file)!r} / {s}.key_file "
                f"{str(broker.key_file)!r}: cannot load the client certificate ({exc}): give "
                "a PEM certificate and its unencrypted PEM key"
            ) from exc
    return context


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves it untyped


class _ClosingSSLSocket(ssl.SSLSocket):
    """paho leaves the socket open when the TLS handshake fails (a refused certificate);
    this one closes itself then, so no file descriptor leaks per retry."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def connect_properties(max_packet: int | None = None) -> Properties:
    props = _properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0  # no broker-side session: the spool is the durability
    if max_packet is not None:
        props.MaximumPacketSize = max_packet
    return props


def open_socket(
    client: mqtt.Client, broker: BrokerConfig, timeout: float, max_packet: int | None = None
) -> None:
    """TCP (and TLS) connect and send CONNECT; the CONNACK arrives in the network loop."""
    client.connect_timeout = timeout
    try:
        client.connect(
            broker.host,
            broker.effective_port,
            keepalive=KEEPALIVE,
            clean_start=True,
            properties=connect_properties(max_packet),
        )
    except ssl.SSLCertVerificationError as exc:
        raise TerminalError(
            f"{broker.where}: its TLS certificate is not trusted ({exc.verify_message}): set "
            f"{broker.section}.ca_file to the CA that signed it, and connect by the name or "
            "address the certificate is for"
        ) from exc
    except ssl.SSLError as exc:
        raise TerminalError(
            f"{broker.where}: TLS handshake failed ({exc.reason or exc}): check that the port "
            f"speaks TLS and {broker.section}.ca_file, cert_file and key_file"
        ) from exc
    except OSError as exc:  # refused, unreachable, DNS, timeout
        raise TransientError(
            f"cannot reach {broker.where} ({exc.strerror or exc}): will retry; check "
            f"{broker.section}.host, {broker.section}.port and the network"
        ) from exc


def password_hint(broker: BrokerConfig) -> str:
    s = broker.section
    return f"EDGE_AGENT__{s.upper()}__PASSWORD or {s}.password_file"


def connack_error(broker: BrokerConfig, reason: ReasonCode) -> EdgeAgentError:
    """The error for a refused connection (CONNACK reason code >= 128)."""
    s = broker.section
    refused = f"{broker.where} refused the connection ({reason})"
    if reason.value in (BAD_USER_OR_PASSWORD, NOT_AUTHORIZED):
        return TerminalError(
            f"{refused}: check {s}.username and the password ({password_hint(broker)}), and "
            "that the broker's password file and ACL know this user"
        )
    if reason.value in (CLIENT_ID_NOT_VALID, BAD_AUTH_METHOD):
        return TerminalError(f"{refused}: set {s}.client_id to an id the broker accepts")
    return TransientError(f"{refused}: will retry")


def disconnect_error(
    broker: BrokerConfig, reason: ReasonCode | None, during: str
) -> EdgeAgentError:
    """The error for a connection that ended ``during`` something (no CONNACK yet, a
    transfer...)."""
    s = broker.section
    text = str(reason) if reason is not None else "connection closed"
    lost = f"{broker.where} closed the connection {during} ({text})"
    value = reason.value if reason is not None else 0
    if value == PACKET_TOO_LARGE:
        fix = f"lower {s}.chunk_bytes" if s == "sink" else "raise the broker's size limit"
        return TerminalError(f"{lost}: the broker refuses messages this large: {fix}")
    if value == NOT_AUTHORIZED:
        return TerminalError(
            f"{lost}: the broker's ACL does not allow this client to publish "
            "or subscribe to its topics: allow them for this user"
        )
    if value == SESSION_TAKEN_OVER:
        return TransientError(
            f"{lost}: another client connected with the same client id; "
            f"give each one its own {s}.client_id"
        )
    return TransientError(f"{lost}: will retry")


def publish_properties(pairs: list[tuple[str, str]]) -> Properties:
    props = _properties(PacketTypes.PUBLISH)
    props.UserProperty = pairs
    return props


def user_properties(message: mqtt.MQTTMessage) -> list[tuple[str, str]]:
    props = getattr(message, "properties", None)
    pairs = getattr(props, "UserProperty", None) or []
    return [(str(k), str(v)) for k, v in pairs]
