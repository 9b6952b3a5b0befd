"""Docker's prune filters (models/filters.py): until, label, label!."""

from __future__ import annotations

import time

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.models.filters import PruneFilters

pytestmark = pytest.mark.unit


def test_until_keeps_what_is_younger():
    now = time.time()
    f = PruneFilters({"until": ["1h"]})
    assert f.prunes(now - 7200, {}) and not f.prunes(now - 60, {})
    assert PruneFilters({"until": "1700000000"}).until == 1700000000.0
    assert not PruneFilters({"until": ["2000-01-01T00:00:00Z"]}).prunes(now, {})


def test_labels_must_all_match_and_label_not_keeps_what_carries_them():
    f = PruneFilters({"label": ["team", "tier=dev"]})
    assert f.prunes(0, {"team": "ml", "tier": "dev"})
    assert not f.prunes(0, {"team": "ml", "tier": "prod"}) and not f.prunes(0, {"tier": "dev"})
    g = PruneFilters({"label!": ["keep"]})
    assert g.prunes(0, {}) and g.prunes(0, {"other": "1"}) and not g.prunes(0, {"keep": ""})
    assert PruneFilters(None).prunes(None, None) and not PruneFilters({})


@pytest.mark.parametrize("filters, message", [
    ({"colour": ["red"]}, "invalid filter 'colour'"),
    ({"until": ["soon"]}, "invalid time value: soon"),
    ({"until": ["1h", "2h"]}, "more than one until filter specified"),
])
def test_bad_filters_are_refused(filters, message):
    with pytest.raises(InvalidArgument, match=f"^{message}$"):
        PruneFilters(filters)
