"""Docker's resource rules (runtime/resources.py): checks, create defaults, update merging and
the runtime's update flags, without a container."""

from __future__ import annotations

import pytest

from portside.engine.errors import Conflict, InvalidArgument
from portside.engine.runtime.resources import adapt, merge_update, runtime_update_args, verify

pytestmark = pytest.mark.unit

M = 1024 * 1024


@pytest.mark.parametrize("hc, update, message", [
    ({"Memory": 1 * M}, False, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 * M, "MemorySwap": 32 * M}, False,
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({"MemorySwap": 32 * M}, False,
     "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ({"NanoCpus": -1}, False, "Range of CPUs is from 0.01 to"),
    ({"CpuShares": -2}, True, "invalid CPU shares (-2): value must be a positive integer"),
])
def test_verify_refuses_with_dockers_messages(hc, update, message):
    with pytest.raises(InvalidArgument) as err:
        verify(dict(hc), update=update, swap_supported=True)
    assert str(err.value).startswith(message)


def test_verify_allows_swap_alone_in_an_update_and_adjusts_without_swap_accounting():
    assert verify({"MemorySwap": 32 * M}, update=True, swap_supported=True) == []
    hc = {"Memory": 64 * M}
    warnings = verify(hc, swap_supported=False)
    assert hc["MemorySwap"] == -1 and warnings == [
        "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
        "Memory limited without swap."]


def test_adapt_gives_twice_the_memory_as_swap_unless_set():
    assert adapt({"Memory": 64 * M, "MemorySwap": 0})["MemorySwap"] == 128 * M
    assert adapt({"Memory": 64 * M, "MemorySwap": -1})["MemorySwap"] == -1
    assert adapt({"Memory": 0, "MemorySwap": 0})["MemorySwap"] == 0


def test_merge_update_keeps_what_the_change_leaves_and_refuses_dockers_conflicts():
    current = {"Memory": 64 * M, "MemorySwap": 128 * M, "NanoCpus": 10**9, "CpuShares": 0,
               "PidsLimit": None, "AutoRemove": False,
               "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}
    out = merge_update(current, {"Memory": 100 * M, "PidsLimit": 10,
                                 "RestartPolicy": {"Name": "always"}})
    assert (out["Memory"], out["MemorySwap"], out["NanoCpus"], out["PidsLimit"]) == \
        (100 * M, 128 * M, 10**9, 10)
    assert out["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert current["Memory"] == 64 * M  # not changed in place
    with pytest.raises(Conflict, match="^Memory limit should be smaller than already set "
                                       "memoryswap limit, update the memoryswap at the same time$"):
        merge_update(current, {"Memory": 200 * M})
    assert merge_update(current, {"Memory": 200 * M, "MemorySwap": -1})["MemorySwap"] == -1
    with pytest.raises(InvalidArgument, match="^Minimum memoryswap limit should be larger"):
        merge_update(current, {"MemorySwap": 32 * M})
    with pytest.raises(Conflict, match="^Restart policy cannot be updated because AutoRemove is "
                                       "enabled for the container$"):
        merge_update(dict(current, AutoRemove=True), {"RestartPolicy": {"Name": "on-failure"}})


def test_runtime_update_args_name_only_what_changed_with_memory_and_swap_together():
    merged = {"Memory": 64 * M, "MemorySwap": 128 * M, "NanoCpus": 1_500_000_000,
              "CpuShares": 512, "PidsLimit": 0}
    assert runtime_update_args(merged, {"MemorySwap": 128 * M}) == [
        "--memory", str(64 * M), "--memory-swap", str(128 * M)]
    assert runtime_update_args(merged, {"NanoCpus": 1_500_000_000, "CpuShares": 512}) == [
        "--cpu-period", "100000", "--cpu-quota", "150000", "--cpu-share", "512"]
    assert runtime_update_args(merged, {"PidsLimit": 0}) == ["--pids-limit", "-1"]
    assert runtime_update_args(merged, {"RestartPolicy": {"Name": "always"}}) == []
