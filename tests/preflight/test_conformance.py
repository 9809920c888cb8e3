"""Every YAML rule case: the request's errors are exactly the expected rule ids."""

import pytest
from casekit import Case, load_cases

from omnipost.clock import FixedClock
from omnipost.validation import validate_request
from omnipost.request import PostRequest

from conftest import NOW

CASES = load_cases()


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_case_reports_exactly_the_expected_rules(case: Case) -> None:
    request = PostRequest.model_validate(case.request)
    result = await validate_request(request, clock=FixedClock(NOW), accounts=case.directory, media=case.directory)
    (target,) = result.results
    assert sorted(e.rule or "" for e in target.errors) == sorted(case.expected)
    assert target.valid is (not case.expected)
    for warning in case.warnings:
        assert warning in {w.code for w in target.warnings}
    reported = {e.rule for e in target.errors} | {w.code for w in target.warnings}
    assert not (set(case.passes) & reported), "a rule listed under passes was reported"
    if case.measure is not None:
        assert target.measure.length == case.measure
