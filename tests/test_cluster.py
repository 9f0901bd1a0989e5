"""Inside a Determined trial, %det_seed with no seed adopts the cluster's trial seed."""

from __future__ import annotations

import random

import pytest
from IPython.core.error import UsageError

import det_nb


@pytest.fixture
def on_cluster(shell, monkeypatch):
    monkeypatch.setenv("DET_TRIAL_SEED", "1129302213")
    yield shell
    monkeypatch.delenv("DET_TRIAL_SEED")
    shell.run_line_magic("det_seed", "42 --quiet")


def test_no_seed_adopts_the_cluster_trial_seed(on_cluster) -> None:
    on_cluster.run_line_magic("det_seed", "--quiet")
    lineage = det_nb.lineage()
    assert (lineage.trial_seed, lineage.experiment_seed_origin) == (1129302213, "cluster")
    assert "(cluster)" in lineage.summary()
    assert det_nb.status().check("determined cluster").state == "ok"
    drawn = random.random()
    random.seed(1129302213)  # the same draw as locally with %det_seed 1129302213
    assert drawn == random.random()


def test_an_explicit_seed_overrides_the_cluster_with_a_note(on_cluster) -> None:
    on_cluster.run_line_magic("det_seed", "42 --quiet")
    assert det_nb.lineage().trial_seed == 42
    check = det_nb.status().check("determined cluster")
    assert check.state == "warn" and "overrides the cluster's trial seed 1129302213" in check.detail


def test_trial_without_seed_on_a_cluster_is_refused(on_cluster) -> None:
    with pytest.raises(UsageError, match="trial seed comes from the cluster"):
        on_cluster.run_line_magic("det_seed", "--trial 2")


def test_malformed_cluster_seed_is_an_error_not_ignored(on_cluster, monkeypatch) -> None:
    monkeypatch.setenv("DET_TRIAL_SEED", "soon")
    with pytest.raises(UsageError, match=r"DET_TRIAL_SEED must be an integer in \[0, 2147483647\]"):
        on_cluster.run_line_magic("det_seed", "--quiet")
