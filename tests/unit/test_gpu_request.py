"""The --gpus and --device grammars (Docker's), including their error messages."""

from __future__ import annotations

import pytest

from portside.engine.errors import GPUError, InvalidArgument
from portside.engine.gpu.request import (CDIDeviceName, DeviceMapping, GPURequest, is_cdi_name,
                                         parse_device, parse_gpus)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value, want", [
    ("all", GPURequest(count=-1)),
    ("2", GPURequest(count=2)),
    ("0", GPURequest(count=0)),
    ("count=3", GPURequest(count=3)),
    ("count=all", GPURequest(count=-1)),
    ('"device=0,2"', GPURequest(count=None, device_ids=["0", "2"])),
    ("device=GPU-3a1f6c2e-aaaa-bbbb", GPURequest(count=None, device_ids=["GPU-3a1f6c2e-aaaa-bbbb"])),
    ("driver=nvidia", GPURequest(count=1, driver="nvidia")),
    ('"capabilities=compute,utility"', GPURequest(count=1, capabilities=[["compute", "utility", "gpu"]])),
    ('all,"capabilities=compute,video",driver=nvidia',
     GPURequest(count=-1, capabilities=[["compute", "video", "gpu"]], driver="nvidia")),
    ('count=1,"options=a=1,b=2"', GPURequest(count=1, options={"a": "1", "b": "2"})),
    ("count=0,device=1", GPURequest(count=None, device_ids=["1"])),
])
def test_parse_gpus_accepts_docker_forms(value: str, want: GPURequest) -> None:
    assert parse_gpus(value) == want


def test_defaults_match_docker() -> None:
    req = parse_gpus("driver=nvidia")
    assert req.count == 1 and req.capabilities == [["gpu"]] and req.options == {}
    assert parse_gpus("all").all and not parse_gpus("1").all


@pytest.mark.parametrize("value, message", [
    ("", "invalid --gpus value: empty"),
    ("device=0,2", "count and device can't be used together"),  # unquoted: "2" reads as a count
    ("count=2,device=1", "count and device can't be used together"),
    ("2,count=3", "gpu request key 'count' can be specified only once"),
    ("driver=a,driver=b", "gpu request key 'driver' can be specified only once"),
    ("count=two", "count must be an integer or \"all\": 'two'"),
    ("gpus", "count must be an integer or \"all\": 'gpus'"),
    ("colour=red", "unexpected key 'colour' in 'colour=red'"),
    ("count=-3", "count must not be negative"),
    ('"device=0,,1"', "empty device id"),
])
def test_parse_gpus_rejects_with_one_line_messages(value: str, message: str) -> None:
    with pytest.raises(GPUError) as info:
        parse_gpus(value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, InvalidArgument)


def test_unbalanced_quote_is_an_error() -> None:
    with pytest.raises(GPUError, match="invalid --gpus value"):
        parse_gpus('"device=0,1')


@pytest.mark.parametrize("value, want", [
    ("nvidia.com/gpu=all", CDIDeviceName("nvidia.com/gpu", "all")),
    ("vendor.example.com/fpga.v2=dev-0:1", CDIDeviceName("vendor.example.com/fpga.v2", "dev-0:1")),
    ("/dev/fuse", DeviceMapping("/dev/fuse", "/dev/fuse", "rwm")),
    ("/dev/sda:/dev/xvda", DeviceMapping("/dev/sda", "/dev/xvda", "rwm")),
    ("/dev/sda:r", DeviceMapping("/dev/sda", "/dev/sda", "r")),
    ("/dev/sda:/dev/xvdc:rw", DeviceMapping("/dev/sda", "/dev/xvdc", "rw")),
])
def test_parse_device(value: str, want: object) -> None:
    assert parse_device(value) == want


@pytest.mark.parametrize("value, message", [
    ("/dev/sda:/dev/xvdc:rwx", "invalid device mode: rwx"),
    ("/dev/sda:/dev/xvdc:rr", "invalid device mode: rr"),
    ("/dev/sda:xvdc", "container path must be absolute"),
    ("/dev/a:/dev/b:r:w", "invalid device specification"),
    ("nvidia.com=0", "invalid CDI device name"),
    ("nvidia.com/gpu=", "invalid CDI device name"),
])
def test_parse_device_errors(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_device(value)


def test_is_cdi_name() -> None:
    assert is_cdi_name("nvidia.com/gpu=0")
    assert not is_cdi_name("/dev/nvidia0")
    assert not is_cdi_name("nvidia.com/gpu")
