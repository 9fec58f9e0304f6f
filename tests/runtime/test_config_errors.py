"""A config entry that cannot be built names the key and the value at fault, in one line (exit 2 in the CLI)."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from medwss.errors import MedwssError
from medwss.runtime.config import parsed


def test_a_component_that_refuses_its_value_is_named_with_the_reason() -> None:
    # MONAI wraps the constructor's ValueError in "Failed to instantiate ...": the reason must survive the wrapper
    parser = ConfigParser({"inferer": {"_target_": "fractions.Fraction", "numerator": "not-a-number"}})
    with pytest.raises(MedwssError) as err:
        parsed(parser, "inferer")
    message = str(err.value)
    assert "config inferer" in message
    assert "fractions.Fraction" in message
    assert "not-a-number" in message  # the value at fault, from the inner error
    assert "\n" not in message


def test_an_absent_key_gives_the_default_and_a_good_one_builds() -> None:
    parser = ConfigParser({"half": {"_target_": "fractions.Fraction", "numerator": 1, "denominator": 2}})
    assert parsed(parser, "missing", 7) == 7
    assert float(parsed(parser, "half")) == 0.5
