"""Unit tests for the rtnetlink encoding (:mod:`portside.engine.network.netlink`): attributes,
nesting, and a request answered by a fake kernel. The real requests run in the network
integration tests."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from portside.engine.network import netlink as nl

pytestmark = pytest.mark.unit


def test_attributes_are_padded_and_parsed_back() -> None:
    data = nl.attr_str(nl.IFLA_IFNAME, "eth0") + nl.attr_u32(nl.IFLA_MTU, 1500)
    assert len(data) % 4 == 0
    assert data[:4] == struct.pack("=HH", 4 + 5, nl.IFLA_IFNAME)  # "eth0\0": 5 bytes, padded
    attrs = nl.parse_attrs(data)
    assert attrs[nl.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", attrs[nl.IFLA_MTU])[0] == 1500


def test_nested_flag_is_ignored_when_parsing() -> None:
    inner = nl.attr_str(nl.IFLA_INFO_KIND, "veth")
    data = struct.pack("=HH", 4 + len(inner), nl.IFLA_LINKINFO | 0x8000) + inner
    assert nl.parse_attrs(nl.parse_attrs(data)[nl.IFLA_LINKINFO]) == {nl.IFLA_INFO_KIND: b"veth\0"}


class _FakeSocket:
    """Answers each request with prepared messages carrying the request's sequence number."""

    def __init__(self, answers) -> None:
        self.answers = answers
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, _size: int) -> bytes:
        seq = struct.unpack_from("=IHHII", self.sent[-1])[3]
        out = b""
        for kind, payload in self.answers.pop(0):
            out += struct.pack("=IHHII", 16 + len(payload), kind, 0, seq, 0) + payload
            out += b"\0" * ((-len(out)) % 4)
        return out

    def close(self) -> None:
        pass


def _client(answers) -> nl.RTNL:
    client = nl.RTNL.__new__(nl.RTNL)
    client.sock = _FakeSocket(answers)
    client._seq = 0
    return client


def test_link_get_decodes_the_answer_and_errors_carry_the_errno() -> None:
    link = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, 7, 1, 0)
    link += nl.attr_str(nl.IFLA_IFNAME, "eth0") + nl.attr_u32(nl.IFLA_LINK, 42)
    client = _client([[(nl.RTM_NEWLINK, link)],
                      [(nl.NLMSG_ERROR, struct.pack("=i", -errno.ENODEV) + b"\0" * 16)]])
    got = client.link_get("eth0")
    assert (got.index, got.ifname, got.link, got.flags) == (7, "eth0", 42, 1)
    assert client.link_lookup("nope") == []


def test_a_change_waits_for_the_acknowledgement_and_raises_on_refusal() -> None:
    ack = (nl.NLMSG_ERROR, struct.pack("=i", 0) + b"\0" * 16)
    refused = (nl.NLMSG_ERROR, struct.pack("=i", -errno.EEXIST) + b"\0" * 16)
    client = _client([[ack], [refused]])
    client.addr_add(3, "10.0.0.2", 24)
    sent = client.sock.sent[0]
    assert struct.unpack_from("=IHH", sent)[1:] == (nl.RTM_NEWADDR, nl.NLM_F_REQUEST |
                                                   nl.NLM_F_ACK | nl.NLM_F_CREATE |
                                                   nl.NLM_F_EXCL)
    with pytest.raises(nl.NetlinkError) as exc:
        client.link_add_bridge("br0")
    assert exc.value.code == errno.EEXIST


def test_a_dump_reads_until_done() -> None:
    def route(dst: str, dst_len: int, table: int) -> bytes:
        body = struct.pack("=BBBBBBBBI", socket.AF_INET, dst_len, 0, 0, table, 4, 0, 1, 0)
        return body + nl.attr(nl.RTA_DST, socket.inet_aton(dst)) + nl.attr_u32(nl.RTA_OIF, 2)

    client = _client([[(nl.RTM_NEWROUTE, route("10.1.0.0", 16, 254))],
                      [(nl.RTM_NEWROUTE, route("10.1.0.1", 32, 255)), (nl.NLMSG_DONE, b"")]])
    assert client.routes() == [nl.Route("10.1.0.0", 16, 254, 2), nl.Route("10.1.0.1", 32, 255, 2)]
