"""The network commands through the real CLI: create, ls, inspect, rm, prune and their errors."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_network_lifecycle_through_the_cli(cli):
    try:
        names = cli("network", "ls", "--format", "{{.Name}}").out.split()
        assert names[:1] == ["bridge"] and {"host", "none"} <= set(names)
        net_id = cli("network", "create", "--subnet", "10.231.7.0/24", "--label", "team=ml",
                     "pslabnet").out.strip()
        assert len(net_id) == 64
        doc = json.loads(cli("network", "inspect", "pslabnet").out)[0]
        assert doc["IPAM"]["Config"] == [{"Subnet": "10.231.7.0/24", "Gateway": "10.231.7.1"}]
        assert doc["Labels"] == {"team": "ml"} and doc["Driver"] == "bridge"
        assert json.loads(cli("inspect", "--type", "network", "-f", "json", "pslabnet").out)[0]["Id"] == net_id
        assert cli("network", "ls", "-f", "label=team=ml", "-q").out.split() == [net_id[:12]]
        # overlapping subnet and unknown network: one line, exit 125, nothing made
        clash = cli("network", "create", "--subnet", "10.231.7.128/25", "other", check=False)
        assert clash.returncode == 125 and clash.err.count("\n") == 1 and "overlap" in clash.err
        missing = cli("network", "inspect", "nope", check=False)
        assert missing.returncode == 1 and missing.err == "Error: No such network: nope\n"
        refused = cli("network", "rm", "bridge", check=False)
        assert refused.returncode == 1 and "pre-defined" in refused.err
        assert "pslabnet" in cli("network", "prune", "-f").out
        assert "pslabnet" not in cli("network", "ls").out
        assert "other" not in cli("network", "ls").out
    finally:  # a failing assertion must not leave a bridge behind
        cli("network", "rm", "pslabnet", "other", check=False)
