"""Unit tests for what the monitor process and the engine exchange: its JSON (without the json
package), and a launch abandoned before its configuration."""

from __future__ import annotations

import json

import pytest

from portside.engine.runtime import monitor_process as mp

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", [
    {"runtime": "/usr/sbin/runc", "tty": False, "stdin": True, "on_exit": ["a", "b c"],
     "watch_lock": None, "n": 3, "f": 1.5},
    {"log": "caf\u00e9 \"quoted\" \\ \n\t\u2028", "empty": {}, "list": []},
    [1, -2, 3.25, True, False, None, "x"],
])
def test_dumps_and_loads_agree_with_json(value) -> None:
    text = mp.dumps(value)
    assert json.loads(text) == value
    assert text == json.dumps(value)
    assert mp.loads(json.dumps(value)) == value
    assert mp.loads(" " + json.dumps(value, indent=1) + "\n") == value


def test_loads_refuses_what_json_refuses() -> None:
    for bad in ("", "{", '{"a": 1} x', "nope"):
        with pytest.raises(ValueError):
            mp.loads(bad)


def test_a_runtime_error_reads_as_the_create_failure_it_was(tmp_path) -> None:
    log = tmp_path / "runtime.log"
    log.write_text(json.dumps({"level": "warning", "msg": "ignored"}) + "\n" + json.dumps(
        {"level": "error", "msg": 'runc run failed: unable to start container process: exec: '
                                  '"x": executable file not found in $PATH'}) + "\n")
    monitor = mp._Monitor({}, -1)
    assert monitor.runtime_error(str(log)) == (
        'runc create failed: unable to start container process: exec: "x": executable file not '
        'found in $PATH')
    assert monitor.runtime_error(str(tmp_path / "missing.log")) == ""
