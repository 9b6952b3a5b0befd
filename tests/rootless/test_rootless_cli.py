"""The whole CLI as a user without root: images, builds, containers, volumes, GPUs (CDI).

Every test runs ``portside`` as ``portside-rl1`` (a user with a subordinate range) through
``setpriv``, on a fresh state root in their home; the ``rl`` fixture resets it afterwards and
checks that nothing of portside is left running for the user.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.rootless, pytest.mark.slow]


def subordinate_start(user: str, path: str = "/etc/subuid") -> int:
    for line in Path(path).read_text().splitlines():
        name, start, _count = line.split(":")
        if name == user:
            return int(start)
    raise AssertionError(f"no subordinate range for {user}")


def host_id(user: str, container_id: int, path: str = "/etc/subuid") -> int:
    """The host id of a container id in the user's full mapping (0 is the user)."""
    if container_id == 0:
        import pwd

        info = pwd.getpwnam(user)
        return info.pw_uid if path.endswith("subuid") else info.pw_gid
    return subordinate_start(user, path) + container_id - 1


def one_line_error(proc, code: int = 125) -> str:
    assert proc.returncode == code, (proc.returncode, proc.out, proc.err)
    lines = [line for line in proc.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.err
    return lines[0]


@pytest.fixture
def busybox(rl):
    rl("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    return "busybox:latest"


@pytest.fixture
def debian(rl, debian_tar):
    rl("load", "-i", str(debian_tar), "-q")
    return "portside/debian:bookworm"


def test_info_says_rootless_with_the_mapping(rl, busybox):
    info = json.loads(rl("info", "--format", "json").out)
    assert info["Rootless"] is True
    start = subordinate_start("portside-rl1")
    assert info["IDMappings"]["UIDMap"] == [
        {"ContainerID": 0, "HostID": rl.user.uid, "Size": 1},
        {"ContainerID": 1, "HostID": start, "Size": 65536}]
    text = rl("info").out
    assert " Rootless: true" in text
    assert f" ID Mapping: full (uid 0->{rl.user.uid}, 1-65536->{start};" in text
    assert "userxattr" in text and "Network Mode: slirp4netns (default network" in text
    assert info["DockerRootDir"] == str(rl.root)


def test_run_as_root_of_the_namespace_is_the_user_on_the_host(rl, busybox):
    out = rl("run", "--rm", "--net", "none", busybox, "sh", "-c",
             "id -u; cat /proc/self/uid_map; touch /made-here; ls -n /made-here").out.split("\n")
    assert out[0] == "0"
    assert out[1].split() == ["0", str(rl.user.uid), "1"]
    assert out[2].split() == ["1", str(subordinate_start("portside-rl1")), "65536"]
    # container processes belong to the user (and their range) on the host, never to root
    proc = rl.user.popen([str(rl.user.venv.bin / "portside"), "run", "--rm", "--net", "none",
                          busybox, "sleep", "30"], env=rl.env(), stdout=subprocess.DEVNULL)
    try:
        pids = []
        for _ in range(400):
            pids = [line.split()[0] for line in rl.user.processes() if "sleep 30" in line]
            if len(pids) > 1:  # the CLI's argv and the container's sleep
                break
            import time

            time.sleep(0.025)
        owners = {os.stat(f"/proc/{pid}").st_uid for pid in pids}
        assert owners == {rl.user.uid}, owners
    finally:
        rl("rm", "-f", *rl("ps", "-q").out.split(), check=False)
        proc.wait(timeout=30)


def test_detached_logs_exec_top_stop_kill_rm(rl, busybox):
    cid = rl("run", "-d", "--name", "bg", "--net", "none", busybox, "sh", "-c",
             "trap 'echo bye; exit 0' TERM; echo started; while :; do sleep 0.1; done").out.strip()
    assert len(cid) == 64
    rl("exec", "bg", "sh", "-c", "echo state > /kept")
    # the CLI's quick exec is root's: a user's exec goes through the engine (into the user's
    # namespace, through the OCI runtime), and says so when asked
    kept = rl("exec", "bg", "cat", "/kept", env={"PORTSIDE_QUICK_EXEC": "explain"})
    assert kept.out == "state\n" and "exec through the engine: not root" in kept.err, kept.err
    assert "started" in rl("logs", "bg").out
    top = rl("top", "bg").out
    assert "while" in top or "sleep" in top, top
    assert rl("ps", "--format", "{{.Names}} {{.Status}}").out.startswith("bg Up")
    rl("stop", "-t", "5", "bg")
    assert rl("inspect", "--format", "{{.State.ExitCode}}", "bg").out.strip() == "0"
    assert "bye" in rl("logs", "bg").out
    rl("start", "bg")
    rl("kill", "bg")
    assert rl("wait", "bg").out.strip() == "137"
    rl("rm", "bg")
    assert rl("ps", "-aq").out == ""


def test_exit_codes(rl, busybox):
    assert rl("run", "--rm", "--net", "none", busybox, "sh", "-c", "exit 3",
              check=False).returncode == 3
    assert rl("run", "--rm", "--net", "none", busybox, "no-such-command",
              check=False).returncode == 127
    assert rl("run", "--rm", "--net", "none", busybox, "/etc",
              check=False).returncode == 126
    one_line_error(rl("run", "--rm", "--net", "none", "no-such-image:1", "true", check=False))
    assert rl("ps", "-aq").out == ""
    # the monitors removed the runtime's state of each container (no cgroup, no hooks: no
    # runtime delete); crun's is in crun/ (its seccomp cache in crun/.portside-bpf stays)
    states = [p for p in [*rl.user.runtime_dir().glob("*/runtime/*"),
                          *rl.user.runtime_dir().glob("*/crun/*")]
              if p.is_dir() and not p.name.startswith(".")]
    assert states == []


def test_cp_commit_export(rl, busybox):
    rl("run", "-d", "--name", "cp1", "--net", "none", busybox, "sleep", "60")
    rl.sh("mkdir -p ~/cp && echo into > ~/cp/in.txt")
    rl("cp", str(rl.path("cp", "in.txt")), "cp1:/in.txt")
    rl("exec", "cp1", "sh", "-c", "chown 1000:1000 /in.txt && echo out > /out.txt")
    rl("cp", "cp1:/out.txt", str(rl.path("cp", "out.txt")))
    out = rl.path("cp", "out.txt")
    assert out.read_text() == "out\n"
    assert out.stat().st_uid == rl.user.uid  # copied out files become the caller's
    rl("commit", "cp1", "committed:1")
    assert rl("run", "--rm", "--net", "none", "committed:1", "stat", "-c", "%u %n",
              "/in.txt").out == "1000 /in.txt\n"
    rl("export", "cp1", "-o", str(rl.path("cp", "c.tar")))
    import tarfile

    with tarfile.open(rl.path("cp", "c.tar")) as tf:
        member = tf.getmember("in.txt")
        assert (member.uid, member.gid) == (1000, 1000)
    rl("rm", "-f", "cp1")


def test_volumes_named_anonymous_bind_and_readonly(rl, busybox):
    rl.sh("mkdir -p ~/data")
    data = rl.path("data")
    secret = rl.root.parent / "root-owned"  # a file of the host's root that the user can read
    secret.write_text("root's\n")
    os.chmod(secret, 0o644)
    script = ("echo n > /n/x; echo a > /anon/y; echo b > /d/z; chown 1000:1001 /d/z; "
              "(echo w > /ro/w) 2>/dev/null && echo ro-written || echo ro-refused; "
              "(echo hack >> /rf) 2>/dev/null && echo rf-written || echo rf-refused; "
              "stat -c '%u %g' /rf")
    try:
        out = rl("run", "--rm", "--net", "none", "-v", "named:/n", "-v", "/anon",
                 "-v", f"{data}:/d", "-v", f"{data}:/ro:ro", "-v", f"{secret}:/rf", busybox,
                 "sh", "-c", script).out.split("\n")
        assert secret.read_text() == "root's\n"
    finally:
        secret.unlink()
    assert out[:3] == ["ro-refused", "rf-refused", "65534 65534"]  # root is nobody in there
    # host owners are the mapped ids: container 1000:1001 -> subordinate start + 999 / + 1000
    st = (data / "z").stat()
    assert (st.st_uid, st.st_gid) == (host_id("portside-rl1", 1000),
                                      host_id("portside-rl1", 1001, "/etc/subgid"))
    assert rl("volume", "ls", "-q").out.split() == ["named"]  # the anonymous one went with --rm
    assert rl("run", "--rm", "--net", "none", "-v", "named:/n", busybox,
              "cat", "/n/x").out == "n\n"


def test_net_none_has_only_loopback_and_host_sees_the_host(rl, busybox):
    links = rl("run", "--rm", "--net", "none", busybox, "ip", "-o", "link").out.splitlines()
    assert [line.split(": ")[1] for line in links] == ["lo"]
    host_links = sorted(os.listdir("/sys/class/net"))
    seen = rl("run", "--rm", "--net", "host", busybox, "ls", "/sys/class/net").out.split()
    assert sorted(seen) == host_links


def test_what_needs_root_or_cgroups_says_so_in_one_line(rl, busybox):
    line = one_line_error(rl("run", "--rm", "--net", "none", "-m", "64m", busybox, "true",
                             check=False))
    assert line.startswith("Error: --memory: rootless containers get no cgroup on this host")
    one_line_error(rl("run", "--rm", "--net", "none", "--cpus", "1", "--pids-limit", "10",
                      busybox, "true", check=False))
    line = one_line_error(rl("run", "--rm", "--net", "none", "--cpu-shares", "512", busybox,
                             "true", check=False))
    assert line.startswith("Error: --cpu-shares: rootless containers get no cgroup")
    rl("run", "-d", "--name", "pp", "--net", "none", busybox, "sleep", "60")
    line = one_line_error(rl("pause", "pp", check=False), 1)  # Docker's status for pause
    assert line.startswith("Error: pause: rootless containers get no cgroup")
    # update: new limits need a cgroup too; a restart policy does not
    line = one_line_error(rl("update", "--memory", "64m", "--pids-limit", "9", "pp",
                             check=False), 1)  # Docker's status for update, as for pause
    assert line.startswith("Error: --memory, --pids-limit: rootless containers get no cgroup")
    rl("update", "--restart", "on-failure:2", "pp")
    assert rl("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.Memory}}",
              "pp").out.split() == ["on-failure", "0"]
    priv = rl("run", "--rm", "--net", "none", "--privileged", busybox, "sh", "-c",
              "grep CapEff /proc/self/status")
    assert "rootless: --privileged gives every capability inside your user namespace" in priv.err
    assert priv.out.split()[1] == "000001ffffffffff"
    assert rl("ps", "-aq").out.split() == [rl("ps", "-q").out.strip()]
    rl("rm", "-f", "pp")


def test_a_foreground_run_passes_the_signals_it_receives_on(rl, busybox):
    """--sig-proxy rootless: timeout's SIGTERM reaches a container that traps it."""
    script = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done"
    proc = rl.user.run(["timeout", "--preserve-status", "3", str(rl.user.venv.bin / "portside"),
                        "run", "--rm", "--net", "none", busybox, "sh", "-c", script],
                       env=rl.env(), check=False, timeout=60)
    assert (proc.returncode, proc.out) == (7, "ready\ngot TERM\n"), proc.err
    assert rl("ps", "-aq").out == ""


def test_unshare_removes_files_of_the_subordinate_ids(rl, busybox):
    rl.sh("mkdir -p ~/shared")
    data = rl.path("shared")
    rl("run", "--rm", "--net", "none", "-v", f"{data}:/d", busybox, "sh", "-c",
       "mkdir /d/made && touch /d/made/f && chown -R 1000:1000 /d/made")
    assert (data / "made").stat().st_uid == host_id("portside-rl1", 1000)
    assert rl.sh(f"rm -rf {data}/made", check=False).returncode != 0  # not the user's on the host
    assert rl("unshare", "id", "-u").out.strip() == "0"  # root of the user's namespace
    rl("unshare", "rm", "-rf", str(data / "made"))
    assert not (data / "made").exists()
    assert rl("unshare", "sh", "-c", "exit 7", check=False).returncode == 7
    line = one_line_error(rl("unshare", "/no/such/program", check=False))
    assert line.startswith("Error: unshare: cannot run /no/such/program")
    # reset without --force removes nothing and says what it would remove
    line = one_line_error(rl("system", "reset", check=False))
    assert line.endswith(f"of {rl.root}: run it with --force")
    assert rl("images", "-q").out.strip()


def test_import_load_push_pull(rl, busybox, tmp_path):
    from registry_fixture import Registry

    registry = Registry(tmp_path / "registry").start()
    try:
        name = f"{registry.host}/rootless/bb:1"
        rl("tag", busybox, name)
        rl("push", name)
        rl("save", "-o", str(rl.path("bb.tar")), busybox)
        rl("rmi", name, busybox)
        assert rl("images", "-q").out == ""
        rl("pull", name)
        assert rl("run", "--rm", "--net", "none", name, "echo", "pulled").out == "pulled\n"
        rl("load", "-i", str(rl.path("bb.tar")))
        rl("export", "-o", str(rl.path("fs.tar")),
           rl("create", "--net", "none", busybox, "true").out.strip())
        rl("import", str(rl.path("fs.tar")), "imported:1")
        assert rl("run", "--rm", "--net", "none", "imported:1", "echo", "imported").out == \
            "imported\n"
    finally:
        registry.stop()


def test_multistage_build_with_a_user_and_chown(rl, debian):
    ctx = rl.path("ctx")
    rl.sh("mkdir -p ~/ctx && echo hello > ~/ctx/hello.txt && cat > ~/ctx/Dockerfile <<'EOF'\n"
          f"FROM {debian} AS base\n"
          "RUN useradd -u 1234 app && mkdir /srv/app && echo data > /srv/app/f && "
          "chown -R app:app /srv/app\n"
          f"FROM {debian}\n"
          "RUN useradd -u 1234 app\n"
          "COPY --from=base --chown=app:app /srv/app /srv/app\n"
          "COPY --chown=1234:1234 hello.txt /srv/app/hello.txt\n"
          "USER app\n"
          # chage is setgid shadow: it reads /etc/shadow only if the set-id bit works
          "RUN stat -c '%u:%g %n' /srv/app/f /srv/app/hello.txt && chage -l app | head -1\n"
          "EOF")
    built = rl("build", "--progress", "plain", "-t", "multi:1", str(ctx))
    out = built.out + built.err
    assert "1234:1234 /srv/app/f" in out and "1234:1234 /srv/app/hello.txt" in out
    assert "Last password change" in out
    mode = rl("run", "--rm", "--net", "none", "multi:1", "stat", "-c", "%a %u %g",
              "/usr/bin/chage").out.split()
    assert mode[0] == "2755" and mode[2] == "42"
    # on the host the files belong to the user's subordinate ids
    found = [p for p in (rl.root / "snapshots").rglob("hello.txt")]
    assert found, "the COPY layer's snapshot holds hello.txt"
    st = found[0].stat()
    assert (st.st_uid, st.st_gid) == (host_id("portside-rl1", 1234),
                                      host_id("portside-rl1", 1234, "/etc/subgid"))
    assert stat.S_IMODE(st.st_mode) == 0o644


def test_cdi_devices_and_gpu_flags(rl, busybox):
    rl.sh("mkdir -p ~/cdi ~/gpu-data && echo from-cdi > ~/gpu-data/hello")
    spec = {"cdiVersion": "0.6.0", "kind": "example.com/device", "devices": [{
        "name": "null", "containerEdits": {
            "deviceNodes": [{"path": "/dev/fakegpu", "hostPath": "/dev/null"}],
            "env": ["FAKEGPU=visible"],
            "mounts": [{"hostPath": str(rl.path("gpu-data")), "containerPath": "/gpu-data",
                        "options": ["ro", "rbind"]}]}}]}
    rl.sh(f"cat > ~/cdi/example.json <<'EOF'\n{json.dumps(spec)}\nEOF")
    env = {"PORTSIDE_CDI_SPEC_DIRS": str(rl.path("cdi"))}
    out = rl("run", "--rm", "--net", "none", "--device", "example.com/device=null", busybox,
             "sh", "-c", "ls -l /dev/fakegpu; echo $FAKEGPU; cat /gpu-data/hello; "
             "echo x > /dev/fakegpu && echo writable", env=env).out.splitlines()
    assert out[0].startswith("crw") and " 1,   3 " in out[0]  # bind-mounted /dev/null
    assert out[1:] == ["visible", "from-cdi", "writable"]
    proc = rl("run", "--rm", "--net", "none", "--gpus", "all", busybox, "true", check=False)
    assert "/dev/nvidia" in one_line_error(proc)
    opt = rl("run", "--rm", "--net", "none", "--gpus", "all", "--gpus-optional", busybox,
             "echo", "ran")
    assert opt.out == "ran\n" and "GPU" in opt.err
    assert rl("ps", "-aq").out == ""


def test_device_flag_binds_the_host_node(rl, busybox):
    out = rl("run", "--rm", "--net", "none", "--device", "/dev/zero:/dev/myzero", busybox,
             "sh", "-c", "ls -l /dev/myzero; head -c 3 /dev/myzero | od -An -tx1").out
    lines = out.splitlines()
    assert lines[0].startswith("crw") and " 1,   5 " in lines[0]
    assert lines[1].split() == ["00", "00", "00"]
