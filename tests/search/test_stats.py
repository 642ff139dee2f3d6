"""Statistics of two arms (``stats``)."""

from __future__ import annotations

import json


def test_comparisons_of_constant_arms_store_as_json():
    from taylorglo.search.stats import compare_arms

    c = compare_arms([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])
    assert c["t"] is None and c["cohens_d"] is None and c["p"] == 0.0 and c["wins"] == 3
    json.dumps(c, allow_nan=False)
