"""The chaos test's pure parts: the seeded plan, the files it makes, and the expectation rules."""

from __future__ import annotations

from collections import Counter

import pytest

from localdev.batch_endpoint.faults import DEFAULT_FAIL_MESSAGE, FaultSpec
from localdev.chaos.plan import (
    FAIL_MARK,
    INVALID_KINDS,
    REJECTION_CODE,
    REQUIRED_COLUMNS,
    Action,
    ChaosPlan,
    Kind,
    Overwrite,
    Upload,
    content,
    make_plan,
)
from localdev.chaos.rules import (
    UNSEEN_LIMIT_SECONDS,
    Containers,
    Outcome,
    VersionFacts,
    expectations,
    judge,
)
from shared.csvfiles import validate_head, validate_name_and_size
from shared.errors import InputInvalid

CONTAINERS = Containers(archive="processed", failed="failed", rejected="rejected")
INPUT_GONE = "The input path 'x' does not exist or is not accessible (ScriptExecution.StreamAccess.NotFound)."


def _plan(seed: int = 3, files: int = 60, kills: int = 6) -> ChaosPlan:
    return make_plan(seed=seed, files=files, kills=kills, topic_down_seconds=20.0, azurite_restart=True)


# ---------------------------------------------------------------- the plan


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert _plan(seed=5) == _plan(seed=5)
    assert _plan(seed=5) != _plan(seed=6)


def test_the_plan_has_the_versions_kills_and_outages_asked_for() -> None:
    plan = _plan(files=40, kills=4)

    actions = Counter(step.action for step in plan.steps)
    assert len(plan.uploads) == 40
    assert [upload.number for upload in plan.uploads] == list(range(1, 41))
    assert plan.kills == actions[Action.START_HOST] == 4
    assert actions[Action.STOP_TOPIC] == actions[Action.START_TOPIC] == actions[Action.RESTART_AZURITE] == 1
    stop = next(s.at for s in plan.steps if s.action is Action.STOP_TOPIC)
    start = next(s.at for s in plan.steps if s.action is Action.START_TOPIC)
    assert start - stop == pytest.approx(20.0)


def test_the_host_comes_back_before_it_is_killed_again() -> None:
    host_steps = [s.action for s in _plan(kills=8).steps if s.action in {Action.KILL_HOST, Action.START_HOST}]

    assert host_steps == [Action.KILL_HOST, Action.START_HOST] * 8


def test_even_a_short_plan_has_each_kind_of_version_the_brief_asks_for() -> None:
    uploads = make_plan(seed=1, files=6, kills=1, topic_down_seconds=4.0, azurite_restart=True).uploads

    assert any(upload.name.count("/") >= 2 for upload in uploads)  # nested a/b/c.csv
    assert any(" " in upload.name for upload in uploads)
    assert any(upload.kind in REJECTION_CODE for upload in uploads)
    assert any(upload.kind is Kind.FAILING for upload in uploads)
    assert {upload.overwrite for upload in uploads} >= {Overwrite.EARLY, Overwrite.IN_FLIGHT}


def test_a_long_plan_has_every_invalid_kind() -> None:
    assert {upload.kind for upload in _plan().uploads} >= set(INVALID_KINDS)


@pytest.mark.parametrize("seed", [1, 11, 12])
def test_an_overwrite_replaces_an_earlier_version_of_its_name(seed: int) -> None:
    uploads = {upload.number: upload for upload in _plan(seed=seed).uploads}
    overwrites = [upload for upload in uploads.values() if upload.replaces is not None]

    assert overwrites
    for upload in overwrites:
        target = uploads[upload.replaces or 0]
        assert target.number < upload.number
        assert target.name == upload.name
        if upload.overwrite is Overwrite.EARLY:
            assert 0 < upload.at - target.at < 0.5
            assert target.overwrite is None
            assert upload.kind is Kind.VALID
            assert target.kind is not Kind.NOT_CSV  # the name keeps meaning what it meant
            assert FAIL_MARK not in upload.name
        elif target.kind is Kind.FAILING:  # issue 10's reproduction: a failing job overwritten by a header-only file
            assert upload.kind is Kind.HEADER_ONLY
        else:
            assert (target.kind, upload.kind) == (Kind.VALID, Kind.VALID)  # only a submitted job is in flight


def test_a_failing_job_is_overwritten_in_flight_in_a_long_plan() -> None:
    uploads = {upload.number: upload for upload in _plan(seed=1).uploads}

    assert any(
        upload.overwrite is Overwrite.IN_FLIGHT and uploads[upload.replaces or 0].kind is Kind.FAILING
        for upload in uploads.values()
    )


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_of_file_is_judged_by_the_app_as_its_kind_says(kind: Kind) -> None:
    name = f"x/c001-{kind}.txt" if kind is Kind.NOT_CSV else f"x/c001-{kind}.csv"
    data = content(Upload(1, name, kind, 0.0, first_row=10, rows=5))

    try:
        if not data:
            raise InputInvalid("0 bytes", code="Empty")  # intake refuses size 0 before reading (intake._validate)
        validate_name_and_size(name, len(data), 1024**3)
        validate_head(data, truncated=False, required_columns=REQUIRED_COLUMNS)
        code = None
    except InputInvalid as exc:
        code = exc.code

    assert code == REJECTION_CODE.get(kind)


def test_the_default_fault_spec_uses_knobs_the_emulator_has() -> None:
    spec = FaultSpec.parse(_plan(seed=9).faults)

    assert spec.seed == 9
    assert spec.status_429 > 0
    assert spec.status_503 > 0
    assert spec.invoke_drop_after_create > 0
    assert spec.invoke_500_after_create > 0
    assert spec.fail_match == Kind.FAILING.value


# ---------------------------------------------------------------- the rules


def _judged(kind: Kind, outcome: Outcome, *, replaced: bool = False, visible: float = 0.0) -> bool:
    return judge(expectations(VersionFacts(kind, replaced, visible), CONTAINERS), outcome) is not None


def test_a_version_nobody_replaced_has_exactly_one_right_outcome() -> None:
    assert _judged(Kind.VALID, Outcome("Completed", moved_to="processed"))
    assert _judged(Kind.WRONG_DELIMITER, Outcome("Rejected", "WrongDelimiter", moved_to="rejected"))
    assert _judged(Kind.FAILING, Outcome("Failed", "UserError", moved_to="failed", message=DEFAULT_FAIL_MESSAGE))

    assert not _judged(Kind.VALID, Outcome(None))  # the newest version must be seen
    assert not _judged(Kind.VALID, Outcome("Completed", not_moved="overwritten"))
    assert not _judged(Kind.VALID, Outcome("Completed", moved_to="failed"))
    assert not _judged(Kind.VALID, Outcome("Failed", "BlobChanged", not_moved="overwritten"))
    assert not _judged(Kind.WRONG_DELIMITER, Outcome("Rejected", "RaggedRows", moved_to="rejected"))
    assert not _judged(Kind.FAILING, Outcome("Failed", "UserError", moved_to="failed", message="something else"))


def test_a_completed_job_keeps_whatever_code_a_retried_invoke_left() -> None:
    assert _judged(Kind.VALID, Outcome("Completed", "ScoringUnavailable", moved_to="processed"))


def test_a_replaced_version_may_end_as_the_moment_of_its_replacement_dictates() -> None:
    allowed = [
        Outcome(None),
        Outcome("Canceled", "BlobChanged", not_moved="overwritten"),
        Outcome("Canceled", "BlobMissing", not_moved="gone"),
        Outcome("Completed", moved_to="processed"),
        Outcome("Completed", not_moved="changed-while-moving"),
        Outcome("Failed", "BlobChanged", not_moved="overwritten"),
        Outcome("Failed", "BlobMissing", not_moved="gone"),
        Outcome("Failed", "UserError", not_moved="gone", message=INPUT_GONE),
    ]
    for outcome in allowed:
        assert _judged(Kind.VALID, outcome, replaced=True), outcome


def test_a_replaced_version_still_cannot_end_just_anyhow() -> None:
    refused = [
        Outcome("Canceled", "BlobChanged", moved_to="failed"),  # a canceled version is never moved
        Outcome("Canceled", "BlobChanged", not_moved="gone"),  # BlobChanged means a newer version holds the name
        Outcome("Failed", "BlobChanged", moved_to="failed"),
        Outcome("Failed", "SubmitGaveUp", not_moved="gone"),
        Outcome("Failed", "UserError", not_moved="gone", message="Injected failure"),
        Outcome("Failed", "CompletionGaveUp", not_moved="completion-gave-up"),
        Outcome("Rejected", "WrongDelimiter", moved_to="rejected"),  # a valid CSV is never rejected
        Outcome("Completed", not_moved="completion-gave-up"),
    ]
    for outcome in refused:
        assert not _judged(Kind.VALID, outcome, replaced=True), outcome


def test_a_replaced_version_may_go_unseen_only_if_it_was_there_briefly() -> None:
    assert _judged(Kind.VALID, Outcome(None), replaced=True, visible=UNSEEN_LIMIT_SECONDS - 1)
    assert not _judged(Kind.VALID, Outcome(None), replaced=True, visible=UNSEEN_LIMIT_SECONDS + 1)


def test_a_replaced_failing_version_fails_as_azure_ml_says_with_its_input_filed_or_left() -> None:
    failed_here = Outcome("Failed", "UserError", moved_to="failed", message=DEFAULT_FAIL_MESSAGE)
    left_in_place = Outcome("Failed", "UserError", not_moved="overwritten", message=DEFAULT_FAIL_MESSAGE)

    assert _judged(Kind.FAILING, failed_here, replaced=True)
    assert _judged(Kind.FAILING, left_in_place, replaced=True)
    assert _judged(Kind.FAILING, Outcome("Failed", "UserError", not_moved="gone", message=INPUT_GONE), replaced=True)
    assert not _judged(Kind.FAILING, Outcome("Failed", "BlobChanged", not_moved="overwritten"), replaced=True)
    assert not _judged(Kind.FAILING, Outcome("Completed", moved_to="processed"), replaced=True)


def test_a_replaced_invalid_version_is_rejected_with_its_own_code_or_canceled_before_validation() -> None:
    assert _judged(Kind.RAGGED, Outcome("Rejected", "RaggedRows", not_moved="overwritten"), replaced=True)
    assert _judged(Kind.RAGGED, Outcome("Canceled", "BlobChanged", not_moved="overwritten"), replaced=True)
    assert not _judged(Kind.RAGGED, Outcome("Completed", moved_to="processed"), replaced=True)
    # A 0-byte file is refused on its size, before any read: being replaced cannot cancel it.
    assert not _judged(Kind.EMPTY, Outcome("Canceled", "BlobChanged", not_moved="overwritten"), replaced=True)
    assert _judged(Kind.EMPTY, Outcome("Rejected", "Empty", moved_to="rejected"), replaced=True)


def test_outcomes_and_rules_read_the_same_way_in_the_table() -> None:
    [rule] = expectations(VersionFacts(Kind.FAILING, replaced=False), CONTAINERS)

    assert rule.describe() == "Failed UserError ->failed"
    assert Outcome("Failed", "BlobChanged", not_moved="overwritten").describe() == "Failed BlobChanged ~overwritten"
    assert Outcome("Completed", "ScoringUnavailable", moved_to="processed").describe() == "Completed ->processed"
    assert Outcome(None).describe() == "unseen"
