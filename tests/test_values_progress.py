"""The tqdm family: a progress bar by what a reader sees (count, total, description, unit,
postfix, shown or not), not by its timings or a notebook bar's widgets."""

from __future__ import annotations

import io
import time

import pytest

from det_nb.fingerprint import Fingerprint, describe_difference, fingerprint, snapshot

tqdm = pytest.importorskip("tqdm")


def bar(steps: int, desc: str = "train", **options: object) -> object:
    """A bar that went through ``steps`` of 3 items, at its own pace."""
    progress = tqdm.tqdm(total=3, desc=desc, file=io.StringIO(), **options)
    for done in range(steps):
        time.sleep(0.001 * done)  # timings differ between bars; they are not compared
        progress.update(1)
        progress.set_postfix(step=done)
    return progress


def test_a_bar_by_what_a_reader_sees() -> None:
    first = bar(3)
    assert isinstance(fingerprint(first), Fingerprint)
    assert fingerprint(first) == fingerprint(bar(3))
    assert fingerprint(first).summary == "tqdm (3/3)"
    assert fingerprint(snapshot(first)) == fingerprint(first)
    assert describe_difference(first, bar(2), "pbar").startswith("pbar: tqdm: n: int differs by 1")
    assert describe_difference(first, bar(3, desc="eval"), "pbar").startswith(
        "pbar: tqdm: desc: str differs")
    assert fingerprint(bar(3, disable=True)) == fingerprint(bar(3, disable=True))


def test_subclasses_such_as_tqdm_auto_are_bars_too() -> None:
    from tqdm.auto import tqdm as auto

    def counted(total: int) -> object:
        progress = auto(total=total, file=io.StringIO())
        progress.update(2)
        return progress

    assert isinstance(fingerprint(counted(4)), Fingerprint)
    assert fingerprint(counted(4)) == fingerprint(counted(4))
    assert describe_difference(counted(4), counted(5), "pbar").endswith("total: int differs by 1")
