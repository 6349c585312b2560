"""Keras' own zoo, the fast CI subset of bench/conformance.py (issue 23): each family's member at random init
and its smallest input, saved, then built by `reportgen build --quick` in a new process as a user runs it.

The families are chosen for their different layer kinds:
- MobileNetV3Small: multiply (squeeze-and-excite), hard-swish, Rescaling inside (fed [0, 255]);
- InceptionV3 at 75 px: valid convolutions, concatenations, a model at its smallest size;
- MobileNet: depthwise convolutions and a reshape before its classifier.
The whole matrix (15 families) is `python bench/conformance.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import conformance  # bench/ holds scripts, not a package

pytestmark = pytest.mark.slow

CI_FAMILIES = ("MobileNetV3Small", "InceptionV3", "MobileNet")


@pytest.mark.parametrize("name", CI_FAMILIES)
def test_a_keras_applications_family_builds_with_the_models_own_numbers(name, tmp_path):
    member = conformance.prepare(conformance.FAMILIES[name], tmp_path)
    build, site = conformance.build_member(member, tmp_path)
    assert build.code == 0, build.stderr[-3000:]
    assert conformance.report_problems(site, member.name, member.accuracy, member.confusion) == []
