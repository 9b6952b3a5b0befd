"""The lock file (TOML round trip, drift messages, enforcement switches) and the recipe's
Dockerfile, without an engine."""

from __future__ import annotations

import tomllib

import pytest

from portside.engine import lock as lockmod
from portside.engine.errors import Conflict, InvalidArgument, NotFound
from portside.engine.recipe import Recipe, RecipeCell, dockerfile

pytestmark = pytest.mark.unit

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def _lock(tmp_path, locked=False) -> lockmod.LockFile:
    lock = lockmod.LockFile(tmp_path / "portside.lock", locked=locked, source_date_epoch=1700000000)
    lock.images["exp:1"] = lockmod.LockedImage(
        "exp:1", D1, D2, None, "build",
        lockmod.BuildInputs(D3, D2, {"PY": "3.11", "Q": 'a "quoted" value\n'}, 1700000000,
                            "portside/debian:bookworm"))
    lock.images["busybox:latest"] = lockmod.LockedImage(
        "busybox:latest", D2, D3, "busybox@" + D3, "pull")
    return lock


def test_round_trip_is_stable_and_valid_toml(tmp_path):
    lock = _lock(tmp_path)
    lock.save()
    text = lock.path.read_text()
    tomllib.loads(text)  # valid TOML
    again = lockmod.LockFile.read(lock.path)
    assert again.images == lock.images
    assert again.source_date_epoch == 1700000000 and again.locked is False
    again.save()
    assert lock.path.read_text() == text  # re-saving changes nothing
    assert '[images."exp:1".build]' in text


def test_bad_lock_files_are_one_line_errors(tmp_path):
    with pytest.raises(NotFound):
        lockmod.LockFile.read(tmp_path / "missing.lock")
    bad = tmp_path / "bad.lock"
    bad.write_text("version = 1\n[images.x]\nid = 'nope'\n")
    with pytest.raises(InvalidArgument, match="no valid id"):
        lockmod.LockFile.read(bad)
    bad.write_text("version = [\n")
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        lockmod.LockFile.read(bad)


def test_names_match_in_any_spelling(tmp_path):
    lock = _lock(tmp_path)
    assert lock.resolve("docker.io/library/busybox:latest") == D2
    assert lock.resolve("busybox") == D2
    with pytest.raises(Conflict, match="does not pin other:1"):
        lock.resolve("other:1")


@pytest.mark.parametrize("change, message", [
    ({"dockerfile": D1}, "the Dockerfile changed (sha256:333333333333"),
    ({"args": {"PY": "3.12", "Q": 'a "quoted" value\n'}}, "build arg PY changed (3.11 → 3.12)"),
    ({"args": {"Q": 'a "quoted" value\n'}}, "build arg PY changed (3.11 → (unset))"),
    ({"source_date_epoch": 1}, "SOURCE_DATE_EPOCH changed (1700000000 → 1)"),
    ({"context": D1}, "the build context changed"),
])
def test_drift_says_what_changed(tmp_path, change, message):
    lock = _lock(tmp_path)
    base = lock.images["exp:1"].build
    fields = {"dockerfile": base.dockerfile, "context": base.context, "args": dict(base.args),
              "source_date_epoch": base.source_date_epoch}
    fields.update(change)
    with pytest.raises(Conflict) as info:
        lockmod.check_build(lock, "exp:1", lockmod.BuildInputs(**fields))
    text = str(info.value)
    assert text.startswith("portside.lock pins exp:1 to sha256:111111111111")
    assert message in text and "\n" not in text


def test_same_inputs_pass(tmp_path):
    lock = _lock(tmp_path)
    b = lock.images["exp:1"].build
    assert lockmod.check_build(lock, "exp:1", b).id == D1


def test_locked_switch_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("PORTSIDE_LOCKED", raising=False)
    assert not lockmod.is_locked(_lock(tmp_path))
    assert lockmod.is_locked(_lock(tmp_path, locked=True))
    monkeypatch.setenv("PORTSIDE_LOCKED", "1")
    assert lockmod.is_locked(_lock(tmp_path))
    monkeypatch.setenv("PORTSIDE_LOCKED", "0")
    assert not lockmod.is_locked(_lock(tmp_path, locked=True))


def test_enforce_pull_gives_the_pinned_digest(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTSIDE_LOCKED", "1")
    lock = _lock(tmp_path)
    assert lockmod.enforce_pull("busybox", lock) == "busybox@" + D3
    with pytest.raises(Conflict, match="registry digest"):
        lockmod.enforce_pull("exp:1", lock)
    # whether a lock applies at all is in_force's answer: not enforced, names stay as they are;
    # a caller's --locked enforces it anyway
    lock.save()
    monkeypatch.setenv("PORTSIDE_LOCK", str(lock.path))
    monkeypatch.setenv("PORTSIDE_LOCKED", "0")
    assert lockmod.in_force() is None
    assert set(lockmod.in_force(force=True).images) == set(lock.images)
    monkeypatch.setenv("PORTSIDE_LOCKED", "1")
    assert set(lockmod.in_force().images) == set(lock.images)
    monkeypatch.setenv("PORTSIDE_LOCK", str(tmp_path / "none.lock"))
    with pytest.raises(NotFound, match="no .*none.lock"):
        lockmod.in_force()


def test_find_lock_honours_portside_lock(tmp_path, monkeypatch):
    monkeypatch.delenv("PORTSIDE_LOCK", raising=False)
    assert lockmod.find_lock(tmp_path) == tmp_path / "portside.lock"
    monkeypatch.setenv("PORTSIDE_LOCK", str(tmp_path / "x.lock"))
    assert lockmod.find_lock() == tmp_path / "x.lock"


def test_recipe_dockerfile_has_one_run_per_shell_cell_and_python_runs():
    recipe = Recipe("portside/debian:bookworm", D1, [
        RecipeCell("a1", "shell", "mkdir -p /out\necho EOF > /out/x"),
        RecipeCell("b2", "python", "x = 1"),
        RecipeCell("c3", "python", 's = """\nEOF\n"""\nprint(x)'),
        RecipeCell("d4", "shell", "ls /out", workdir="/out"),
    ])
    text = dockerfile(recipe)
    assert f"FROM portside/debian@{D1}" in text
    assert text.count("RUN ") == 3
    assert ("RUN python3 - <<'EOF1'\n# cell b2\nx = 1\n# cell c3\n"
            's = """\nEOF\n"""\nprint(x)\nEOF1') in text
    assert "RUN <<'EOF'\nset -e\ncd /out\nls /out\nEOF" in text
    labels = recipe.labels()
    assert labels["org.opencontainers.image.base.digest"] == D1
    assert '"cell":"a1"' in labels["io.portside.recipe"]
