"""The local Rucio server knows the scopes the default profile writes to, so a plan compiled
with the default profile can create its datasets there."""

from __future__ import annotations

import uuid

import pytest

from swfflow.plan.profile import load_profile


@pytest.mark.services
def test_default_profile_scopes_exist_on_the_local_rucio(rucio_catalog):
    profile = load_profile()
    for scope in (profile.scopes.stream, profile.scopes.output):
        did = f"{scope}:swf.scopecheck.{uuid.uuid4().hex[:8]}"
        assert rucio_catalog.create_dataset(did) is True
        assert rucio_catalog.dataset_exists(did) and rucio_catalog.is_open(did)
