"""noisefs.managed(...) validates its own options: one InputError each, naming the keyword."""

from __future__ import annotations

import pytest

from noisefs.aerscope import managed
from noisefs.errors import InputError


@pytest.mark.parametrize(
    "given",
    [
        {"batch": None},
        {"batch": True},
        {"batch": 2.5},
        {"batch": 0},
        {"batch": "many"},
        {"quiet": None},
        {"quiet": "no"},
        {"quota": "lots"},
        {"max_files": 0},
        {"root": 5},
        {"spill_dir": ""},
        {"spill_quota": -1},
        {"put_timeout": -1},
    ],
)
def test_managed_options_are_refused_with_one_input_error(given):
    (name,) = given
    with pytest.raises(InputError) as caught:
        managed(**given)
    text = str(caught.value)
    assert "\n" not in text and text.startswith("noisefs.managed: ") and name in text


def test_managed_options_none_means_the_default_where_there_is_one():
    options = managed(quota=None, max_files=None, root=None, spill_dir=None, put_timeout=None)
    assert options.options.batch == 256 and options.options.quota is None
