"""Determined cluster seeds: inside a Determined trial, adopt the trial seed it assigned."""

from __future__ import annotations

import os
import sys

from det_nb.lineage import validate_seed

TRIAL_SEED_ENV = "DET_TRIAL_SEED"


def cluster_trial_seed() -> int | None:
    """The trial seed of the Determined trial this process runs in, or None off-cluster.

    Read from ``DET_TRIAL_SEED`` (set by Determined in every trial container), else from
    ``det.get_cluster_info()`` when the user already imported ``determined`` (det_nb never
    imports it). A malformed value raises ValueError rather than being ignored.
    """
    value = os.environ.get(TRIAL_SEED_ENV)
    if value is not None:
        return validate_seed(value, TRIAL_SEED_ENV)
    determined = sys.modules.get("determined")
    info = determined.get_cluster_info() if determined is not None else None
    trial = getattr(info, "trial", None) if info is not None else None
    return None if trial is None else validate_seed(trial.trial_seed, "cluster trial seed")
