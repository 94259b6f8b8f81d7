"""Tags written before the keys lost their dots (``autopilot.run_id``) are still read; new ones never written."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.naming import LEGACY_TAG_KEYS, TAG_KEEP, TAG_MANAGED, TAG_RUN_ID, app_tags, is_managed, read_tags
from shared.platform.port import EndpointInfo, JobInfo, JobStatus, ModelRef

LEGACY = {"autopilot.run_id": "old-run-1a2b3c4d", "autopilot.managed": "true", "autopilot.keep": "true"}


def test_new_tags_have_no_dot_and_legacy_keys_are_the_dotted_ones() -> None:
    tags = app_tags("run-1a2b3c4d", "a.yaml")
    assert all("." not in key for key in tags)
    assert set(tags) <= set(LEGACY_TAG_KEYS) and all(v.startswith("autopilot.") for v in LEGACY_TAG_KEYS.values())


def test_legacy_keys_are_read_under_the_current_ones_and_the_current_key_wins() -> None:
    readable = read_tags(LEGACY)
    assert (readable[TAG_RUN_ID], readable[TAG_MANAGED], readable[TAG_KEEP]) == ("old-run-1a2b3c4d", "true", "true")
    assert read_tags({**LEGACY, TAG_RUN_ID: "new-run-00000000"})[TAG_RUN_ID] == "new-run-00000000"
    assert is_managed(LEGACY) and not is_managed({"autopilot.managed": "true"}) and not is_managed(None)


def test_what_the_platform_reports_is_readable_under_the_current_keys() -> None:
    endpoint = EndpointInfo(name="ft-old", tags=LEGACY, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    job = JobInfo(name="old-run-1a2b3c4d", status=JobStatus.COMPLETED, tags=LEGACY)
    model = ModelRef(name="m", version="1", id="azureml:m:1", tags=LEGACY)
    for tags in (endpoint.tags, job.tags, model.tags):
        assert tags[TAG_RUN_ID] == "old-run-1a2b3c4d" and is_managed(tags)
