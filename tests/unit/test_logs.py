"""Unit tests for the json-file log format and its reader (tail, since, follow, partial lines)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from portside.engine.runtime.logs import (encode_entry, format_time, parse_time, read_logs,
                                          write_entry)

pytestmark = pytest.mark.unit


def _write(path: Path, items: list[tuple[str, bytes, float]]) -> None:
    with open(path, "ab") as f:
        for stream, data, ts in items:
            write_entry(f, stream, data, ts)


def test_entry_is_dockers_json_file_format() -> None:
    line = encode_entry("stdout", b"hi\n", 1700000000.5)
    doc = json.loads(line)
    assert doc == {"log": "hi\n", "stream": "stdout", "time": "2023-11-14T22:13:20.500000000Z"}
    assert line.endswith(b"\n") and line.count(b"\n") == 1


def test_time_round_trip() -> None:
    assert format_time(0, ns=1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert parse_time("2023-11-14T22:13:20.123456789Z") == pytest.approx(1700000000.123456789)
    assert parse_time("2023-11-14T23:13:20+01:00") == 1700000000
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_lines_split_and_partial_kept(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _write(log, [("stdout", b"a\nb\npartial", 1.0), ("stderr", b"err\n", 2.0)])
    got = list(read_logs(log))
    assert got == [("stdout", b"a\n", 1.0), ("stdout", b"b\n", 1.0), ("stdout", b"partial", 1.0),
                   ("stderr", b"err\n", 2.0)]


def test_non_utf8_bytes_survive(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _write(log, [("stdout", b"\xff\xfe bin\n", 1.0)])
    assert list(read_logs(log))[0][1] == b"\xff\xfe bin\n"


def test_tail_and_since(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _write(log, [("stdout", f"{i}\n".encode(), float(i)) for i in range(1000)])
    assert [d for _, d, _ in read_logs(log, tail=3)] == [b"997\n", b"998\n", b"999\n"]
    assert list(read_logs(log, tail=0)) == []
    assert len(list(read_logs(log, tail=5000))) == 1000
    assert [d for _, d, _ in read_logs(log, since=998)] == [b"998\n", b"999\n"]
    assert [d for _, d, _ in read_logs(log, until=2)] == [b"0\n", b"1\n"]


def test_tail_over_block_boundary(tmp_path: Path) -> None:
    log = tmp_path / "log"
    big = b"x" * 100_000 + b"\n"
    _write(log, [("stdout", big, 1.0), ("stdout", big, 2.0), ("stdout", b"end\n", 3.0)])
    assert [ts for _, _, ts in read_logs(log, tail=2)] == [2.0, 3.0]


def test_timestamps_prefix(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _write(log, [("stdout", b"x\n", 1700000000.0)])
    assert list(read_logs(log, timestamps=True))[0][1] == b"2023-11-14T22:13:20.000000000Z x\n"


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert list(read_logs(tmp_path / "none")) == []


def test_follow_until_exit_recorded(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _write(log, [("stdout", b"first\n", 1.0)])
    running = threading.Event()
    running.set()

    def writer() -> None:
        for i in range(3):
            time.sleep(0.05)
            _write(log, [("stdout", f"more{i}\n".encode(), 2.0 + i)])
        # A torn write: the reader must wait for the rest of the JSON line.
        line = encode_entry("stderr", b"last\n", 9.0)
        with open(log, "ab") as f:
            f.write(line[:10])
            f.flush()
            time.sleep(0.1)
            f.write(line[10:])
        running.clear()

    t = threading.Thread(target=writer)
    t.start()
    start = time.monotonic()
    got = [d for _, d, _ in read_logs(log, follow=True, is_running=running.is_set)]
    t.join()
    assert got == [b"first\n", b"more0\n", b"more1\n", b"more2\n", b"last\n"]
    assert time.monotonic() - start < 3


def test_follow_stops_at_once_when_not_running(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _write(log, [("stdout", b"only\n", 1.0)])
    assert [d for _, d, _ in read_logs(log, follow=True, is_running=lambda: False)] == [b"only\n"]


def test_log_times_read_without_strptime_match_it() -> None:
    import calendar
    import random

    rng = random.Random(7)
    for _ in range(2000):
        ts = rng.randint(-(10 ** 10), 10 ** 11)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
        if len(text) == 19:
            assert parse_time(text + "Z") == ts
    for text in ("2000-02-29T23:59:59", "2100-02-28T00:00:00", "2024-12-31T23:59:60",
                 "2023-1-05T00:00:00"):  # the last is not the monitor's form: strptime reads it
        assert parse_time(text + "Z") == calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    for bad in ("2023-02-29T00:00:00Z", "2023-13-01T00:00:00Z", "2023-01-01T24:00:00Z"):
        with pytest.raises(ValueError):
            parse_time(bad)
