"""Shared test set-up: plinknet's user cache (remembered data checks) goes to a temporary folder."""

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep ``~/.cache/plinknet`` untouched; subprocesses inherit the variable."""
    monkeypatch.setenv("PLINKNET_CACHE", str(tmp_path_factory.getbasetemp() / "plinknet-cache"))


@pytest.fixture(scope="session")
def root():
    """The committed tiny Inria fixture: two cities, tiles 1 and 6, 64 x 80 px."""
    from helpers import fixture_root

    return fixture_root()
