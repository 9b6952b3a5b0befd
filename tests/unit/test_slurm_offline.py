"""Slurm contexts without a cluster: option parsing, Slurm's outputs, GPU mapping, records."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from portside.engine.config import expand_root
from portside.engine.errors import AlreadyExists, GPUError, InvalidArgument, NotFound
from portside.engine.slurm.cluster import (Job, exit_code_of, gpu_count, parse_scontrol,
                                           parse_squeue, _reason_of)
from portside.engine.slurm.epilog import comment_for, root_from_comment
from portside.engine.slurm.gpus import (allocated_indices, device_ids, expand_brackets,
                                        gpus_value, parse_gres_config)
from portside.engine.slurm.node import raise_answer
from portside.engine.slurm.options import SlurmOptions, parse_options
from portside.engine.slurm.records import RecordStore

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------------------- options
def test_options_round_trip_and_defaults() -> None:
    text = "partition=gpu,time=4:00:00,account=lab,registry=reg.example:5000,root=/scratch/%n," \
           "conf=/etc/slurm/other.conf"
    opts = parse_options(text)
    assert opts == SlurmOptions("gpu", "4:00:00", "lab", "reg.example:5000", "/scratch/%n",
                                "/etc/slurm/other.conf")
    assert parse_options(opts.to_text()) == opts
    assert parse_options("") == SlurmOptions()
    assert parse_options(" partition = gpu , ").partition == "gpu"
    for ok in ("30", "10:00", "1-12", "2-00:30:00", "infinite"):
        assert parse_options(f"time={ok}").time == ok


@pytest.mark.parametrize("text, message", [
    ("queue=gpu", "unknown key 'queue'"),
    ("partition", "expected key=value"),
    ("partition=", "partition needs a value"),
    ("partition=a,partition=b", "partition given twice"),
    ("time=soon", "time must be Slurm's time format"),
    ("partition=a b", "is not a Slurm name"),
    ("registry=http://x", "registry must be HOST[:PORT]"),
    ("root=relative/%n", "root must be an absolute path"),
])
def test_options_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_options(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_expand_root_fills_node_and_user(monkeypatch) -> None:
    import pwd

    monkeypatch.setenv("SLURMD_NODENAME", "node17")
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert expand_root("/scratch/%u/%n") == Path(f"/scratch/{user}/node17")
    assert expand_root("/a/100%%/%x") == Path("/a/100%/%x")
    monkeypatch.delenv("SLURMD_NODENAME")
    import socket

    assert expand_root("/s/%n") == Path("/s/" + socket.gethostname().split(".")[0])


# ------------------------------------------------------------------------------- Slurm's output
def test_squeue_lines_become_jobs() -> None:
    text = ("12|RUNNING|None|node1|0:05|gres:gpu:1|2026-12-03T15:04:05|exp\n"
            "13|PENDING|Resources||0:00|gres:gpu:1|N/A|third\n"
            "14|PENDING|None||0:00|N/A|N/A|a|name|with|bars\n"
            "garbage\n")
    jobs = parse_squeue(text)
    assert jobs["12"] == Job("12", "exp", "RUNNING", "", "node1", "0:05", "gres:gpu:1",
                             "2026-12-03T15:04:05")
    assert jobs["12"].started == time.mktime((2026, 12, 3, 15, 4, 5, 0, 0, -1))
    assert jobs["13"].start == "" and jobs["13"].started is None
    assert jobs["12"].running and jobs["12"].active and not jobs["12"].pending
    assert jobs["13"].considered and jobs["13"].reason == "Resources"
    assert not jobs["14"].considered and jobs["14"].name == "a|name|with|bars"
    assert jobs["14"].gres == "" and set(jobs) == {"12", "13", "14"}
    ended = parse_squeue("15|CANCELLED|None|node2|0:01|N/A|2026-12-03T15:04:05|x\n")["15"]
    assert not ended.active and not ended.running


def test_scontrol_one_line_and_exit_codes() -> None:
    line = ("JobId=7 JobName=exp UserId=root(0) JobState=CANCELLED Reason=None ExitCode=0:15 "
            "Comment=portside-root=/scratch/%n NodeList=node1 Command=(null)")
    detail = parse_scontrol(line)
    assert detail["JobState"] == "CANCELLED" and detail["NodeList"] == "node1"
    assert detail["Comment"] == "portside-root=/scratch/%n"
    assert exit_code_of(detail) == 143
    assert exit_code_of({"ExitCode": "3:0"}) == 3
    assert exit_code_of({}) is None
    assert root_from_comment(detail["Comment"]) == "/scratch/%n"
    assert root_from_comment(comment_for("/x/%n")) == "/x/%n"
    assert comment_for(None) is None and root_from_comment("a note") is None


def test_slurm_errors_lose_their_prefixes() -> None:
    err = "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    assert _reason_of(err) == "Invalid partition name specified"
    assert _reason_of("") == "no reason given"


# ------------------------------------------------------------------------------- GPUs
def test_allocated_indices_prefer_the_step_and_ignore_cuda() -> None:
    env = {"SLURM_JOB_GPUS": "0,1", "SLURM_STEP_GPUS": "1", "CUDA_VISIBLE_DEVICES": "0"}
    assert allocated_indices(env) == [1]
    assert allocated_indices({"SLURM_JOB_GPUS": "0-2,5"}) == [0, 1, 2, 5]
    assert allocated_indices({"CUDA_VISIBLE_DEVICES": "0"}) is None
    assert allocated_indices({"SLURM_JOB_GPUS": ""}) == []
    with pytest.raises(GPUError):
        allocated_indices({"SLURM_JOB_GPUS": "gpu0"})


def test_brackets_and_slurmd_gres_lines() -> None:
    assert expand_brackets("/dev/nvidia[0-1,3]") == ["/dev/nvidia0", "/dev/nvidia1",
                                                     "/dev/nvidia3"]
    assert expand_brackets("gpu[08-10]") == ["gpu08", "gpu09", "gpu10"]
    assert expand_brackets("/dev/x") == ["/dev/x"]
    text = ("slurmd: Gres Name=gpu Type=a100 Count=2 Index=2 ID=7696487 File=/dev/nvidia[2-3] "
            "(null)\n"
            "slurmd: Gres Name=gpu Type=v100 Count=2 Index=0 ID=7696487 File=/dev/nvidia[0-1]\n"
            "slurmd: Gres Name=mps Count=100 Index=0 File=/dev/nvidia0\n"
            "slurmd: Gres Name=gpu Count=1 Index=4 File=(null)\n")
    assert parse_gres_config(text) == [f"/dev/nvidia{i}" for i in range(4)]


def test_device_ids_follow_the_device_numbers(tmp_path: Path) -> None:
    """Slurm's index → the node's device file → the CDI device with that major:minor; a node
    whose second GPU is /dev/nvidia3 gets CDI device 3 for index 1."""
    spec = {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [
        {"name": str(i), "containerEdits": {"deviceNodes": [
            {"path": f"/dev/nvidia{i}", "type": "c", "major": 195, "minor": i}]}}
        for i in range(4)] + [{"name": "all", "containerEdits": {"deviceNodes": [
            {"path": f"/dev/nvidia{i}", "type": "c", "major": 195, "minor": i}
            for i in range(4)]}}]}
    (tmp_path / "nvidia.json").write_text(json.dumps(spec))
    real_stat = os.stat

    class St:
        def __init__(self, minor: int) -> None:
            import stat

            self.st_mode = stat.S_IFCHR | 0o666
            self.st_rdev = os.makedev(195, minor)

    def fake_stat(path, *a, **kw):
        if str(path).startswith("/node/dev/nvidia"):
            return St(int(str(path)[len("/node/dev/nvidia"):]))
        return real_stat(path, *a, **kw)

    files = ["/node/dev/nvidia2", "/node/dev/nvidia3"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "stat", fake_stat)
        assert device_ids([1], files, cdi_dirs=[str(tmp_path)]) == ["3"]
        assert device_ids([0, 1], files, cdi_dirs=[str(tmp_path)]) == ["2", "3"]
        with pytest.raises(GPUError, match="allocated GPU 2 but the node lists 2"):
            device_ids([2], files, cdi_dirs=[str(tmp_path)])
    assert device_ids([1, 0], []) == ["1", "0"]  # no files: the index is the id
    with pytest.raises(GPUError, match="not a device node"):
        device_ids([0], [str(tmp_path / "nvidia.json")], cdi_dirs=[str(tmp_path)])
    assert gpus_value(["3"]) == "device=3" and gpus_value(["2", "3"]) == '"device=2,3"'


def test_gpu_counts_only() -> None:
    assert gpu_count(None) == 0 and gpu_count("2") == 2 and gpu_count("count=1") == 1
    for bad in ("all", '"device=0,1"'):
        with pytest.raises(InvalidArgument, match="ask for a number of GPUs"):
            gpu_count(bad)


# ------------------------------------------------------------------------------- records
def test_records_claim_resolve_delete(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "ctx")
    a = {"Id": "a" * 64, "Name": "exp", "Created": 1.0, "Job": "7"}
    b = {"Id": "ab" + "c" * 62, "Name": "other", "Created": 2.0, "Job": ""}
    store.claim(a)
    store.claim(b)
    with pytest.raises(AlreadyExists, match='"/exp" is already in use'):
        store.claim({"Id": "d" * 64, "Name": "exp", "Created": 3.0})
    assert [r["Name"] for r in store.list()] == ["other", "exp"]
    assert store.resolve("exp")["Id"] == a["Id"] and store.resolve("ab")["Name"] == "other"
    with pytest.raises(InvalidArgument, match="multiple containers"):
        store.resolve("a")
    store.job_output("7").write_text("keeper says")
    store.log_copy(a["Id"]).write_text("{}")
    store.delete(a)
    assert not store.job_output("7").exists() and not store.log_copy(a["Id"]).exists()
    with pytest.raises(NotFound, match="No such container: exp"):
        store.resolve("exp")


def test_node_errors_come_back_as_their_class() -> None:
    from portside.engine.errors import IncorrectState

    assert raise_answer({"result": {"x": 1}}) == {"x": 1}
    with pytest.raises(IncorrectState, match="not running") as info:
        raise_answer({"error": {"type": "IncorrectState", "message": "not running",
                                "exit_code": 125}})
    assert info.value.exit_code == 125
    from portside.engine.errors import EngineError

    with pytest.raises(EngineError, match="strange"):
        raise_answer({"error": {"type": "os.system", "message": "strange"}})


# ------------------------------------------------------------------------------- system, events
def test_events_are_what_changed_between_two_looks() -> None:
    from portside.engine.slurm.system import _changes

    def ctr(name: str, status: str, job: str = "7", code: int = 0) -> dict:
        return {"name": name, "image": "busybox", "status": status, "exitCode": code, "job": job}

    before = {"a": ctr("a", "running"), "b": ctr("b", "created", "8"), "c": ctr("c", "running"),
              "d": ctr("d", "exited", "")}
    after = {"a": ctr("a", "exited", code=143), "b": ctr("b", "running", "8"),
             "d": ctr("renamed", "created", "9"), "e": ctr("e", "running", "10")}
    seen = [(e["Actor"]["ID"], e["Action"], e["Actor"]["Attributes"].get("exitCode"))
            for e in _changes(before, after, 1700000000.5)]
    assert seen == [("a", "die", "143"), ("b", "start", None), ("d", "rename", None),
                    ("d", "update", None), ("e", "create", None), ("e", "start", None),
                    ("c", "destroy", None)]
    event = next(_changes({}, {"e": ctr("e", "created", "10")}, 1700000000.5))
    assert event["Type"] == "container" and event["time"] == 1700000000
    assert event["timeNano"] == 1700000000500000000
    assert event["Actor"]["Attributes"] == {"name": "e", "image": "busybox",
                                            "io.portside.slurm.job": "10"}
    assert list(_changes(after, after, 1.0)) == []


def test_what_concerns_one_store_is_refused_naming_the_context(tmp_path: Path) -> None:
    from portside.engine.errors import Unsupported
    from portside.engine.slurm.engine import SlurmEngine

    engine = SlurmEngine(parse_options("partition=gpu"), tmp_path, local=object(), name="hpc")
    for call in (engine.system.df, engine.system.check, engine.system.reset,
                 engine.system.migrate, lambda: engine.system.unshare(["true"]),
                 lambda: engine.system.prune(all=True, filters={"until": ["1h"]}),
                 lambda: engine.volumes.list(), lambda: engine.networks.create("x")):
        with pytest.raises(Unsupported) as info:
            call()
        assert "\n" not in str(info.value) and info.value.exit_code == 125
    with pytest.raises(Unsupported, match='system df: context "hpc" is a Slurm cluster, where '
                                          "each node has its own store"):
        engine.system.df()


@pytest.mark.parametrize("data, kept", [
    (b"slurmstepd-node1: error: *** STEP 7.1 ON node1 FAILED (non-zero exit code or other "
     b"failure mode) ***\n", b""),
    (b"err\nslurmstepd: error: *** JOB 7 ON node1 CANCELLED AT 2026-12-03T17:00:00 DUE TO "
     b"TIME LIMIT ***\n", b"err\n"),
    (b"err\n", b"err\n"),
    (b"a slurmstepd: error: *** STEP 7.1 ON node1 FAILED ***\n",  # not at a line's start
     b"a slurmstepd: error: *** STEP 7.1 ON node1 FAILED ***\n"),
])
def test_a_following_steps_stderr_loses_slurmstepds_notices(data: bytes, kept: bytes) -> None:
    """A job whose keeper exits non-zero has FAILED: slurmstepd says so into the step that
    follows the container's output, which is not the container's stderr."""
    from portside.engine.slurm.engine import _step_notices

    assert _step_notices(data) == kept


def test_a_record_removed_meanwhile_is_not_brought_back(tmp_path: Path) -> None:
    """A listing reads a record, ``rm`` removes it, then the listing saves what it reconciled
    with ``squeue``: the record stays removed (the panel showed a removed container as exited
    for ever, and ``ps -a`` too)."""
    store = RecordStore(tmp_path)
    rec = {"Id": "a" * 64, "Name": "second", "Created": 1, "State": {"Status": "running"}}
    store.claim(rec)
    seen = store.get(rec["Id"])
    assert seen is not None
    store.delete(rec)
    seen["State"] = {"Status": "exited", "ExitCode": 137}
    store.save(seen)
    assert store.list() == [] and os.listdir(tmp_path / "containers") == []
    store.claim(rec)
    store.save(dict(rec, State={"Status": "exited"}))
    assert store.get(rec["Id"])["State"] == {"Status": "exited"}
