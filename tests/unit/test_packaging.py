"""The repository's folders install under the right import names, as a wheel and editable."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.unit, pytest.mark.packaging]


def test_editable_install_imports_the_repository_folders():
    import portside
    import portside.engine
    import portside.kernel

    assert Path(portside.engine.__file__).resolve() == REPO / "engine" / "__init__.py"
    assert Path(portside.kernel.__file__).resolve() == REPO / "kernel" / "__init__.py"
    assert callable(portside.load_ipython_extension)
    script = Path(sys.executable).parent / "portside"
    out = subprocess.run([str(script), "version", "--format", "{{.Client.Version}}"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == portside.engine.__version__


def test_wheel_installs_and_starts_the_console_script(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(REPO)], check=True, capture_output=True)
    wheels = list(dist.glob("portside-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "portside/engine/__init__.py" in names
    assert "portside/engine/image/store.py" in names
    assert "portside/kernel/__init__.py" in names
    assert not any(n.startswith(("engine/", "kernel/", "tests/")) for n in names)
    # the side panel and the server switch ship prebuilt, so pip install needs no Node.js
    data = [n for n in names if ".data/data/" in n]
    assert any(n.endswith("share/jupyter/labextensions/portside/package.json") for n in data)
    assert any("share/jupyter/labextensions/portside/static/remoteEntry." in n for n in data)
    assert any(n.endswith("etc/jupyter/jupyter_server_config.d/portside.json") for n in data)
    assert "portside/kernel/agent.py" in names
    assert "portside/kernel/server/openapi.yaml" in names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q",
                    str(wheels[0])], check=True, capture_output=True)
    check = subprocess.run([str(py), "-c", "import portside.engine, portside.kernel, sys;"
                            "print(portside.engine.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert str(env_dir) in check.stdout
    version = subprocess.run([str(env_dir / "bin" / "portside"), "version", "--format",
                              "{{.Server.Engine}}"], capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert "daemonless" in version.stdout
