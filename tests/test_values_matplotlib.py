"""The matplotlib family: a figure by its pixels as Agg draws them, artists by their figure."""

from __future__ import annotations

import pytest

from det_nb.fingerprint import describe_difference, fingerprint, snapshot

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("agg")  # what Jupyter's inline backend draws with
plt = pytest.importorskip("matplotlib.pyplot")


def plot(last: float) -> tuple[object, object]:
    figure, axes = plt.subplots(figsize=(4, 3))
    axes.plot([1, 2, 3], [1.0, 4.0, last], marker="o", label="loss")
    axes.set(title="loss per epoch", xlabel="epoch")
    axes.legend()
    plt.close(figure)
    return figure, axes


def test_the_same_plot_is_equal_and_a_moved_point_is_found_in_the_pixels() -> None:
    (fig_a, ax_a), (fig_b, ax_b) = plot(9.0), plot(9.0)
    assert fingerprint(fig_a) == fingerprint(fig_b)
    assert fingerprint(fig_a).summary == "matplotlib Figure 400x300 px (by its pixels)"
    assert fingerprint(ax_a) == fingerprint(ax_b)
    fig_c, ax_c = plot(8.0)
    assert fingerprint(fig_c) != fingerprint(fig_a)
    found = describe_difference(fig_a, fig_c, "fig")
    assert found.startswith("fig: matplotlib Figure: pixels: ") and " elements differ" in found
    assert describe_difference(ax_a, ax_c, "ax").startswith(
        "ax: matplotlib Axes: figure: matplotlib Figure: pixels: ")


def test_a_snapshot_keeps_the_picture_as_it_was() -> None:
    _, axes = plot(9.0)
    before = snapshot(axes)
    axes.plot([1, 3], [2, 2])  # drawn on in place, as a later cell might
    assert fingerprint(before) == fingerprint(plot(9.0)[1])
    assert fingerprint(before) != fingerprint(axes)


def test_a_closed_figure_is_drawn_by_agg_and_keeps_its_own_canvas() -> None:
    figure, _ = plot(9.0)  # closed, as plt.show() leaves a notebook's figures
    own = figure.canvas
    assert fingerprint(figure) == fingerprint(plot(9.0)[0])
    assert figure.canvas is own


def test_size_and_dpi_count_and_an_artist_without_a_figure_is_named() -> None:
    figure, _ = plot(9.0)
    wider, _ = plot(9.0)
    wider.set_size_inches(5, 3)
    assert describe_difference(figure, wider, "fig") == (
        "fig: matplotlib Figure: size_inches[0]: float differs by 1")
    loose = matplotlib.lines.Line2D([0, 1], [0, 1])
    found = fingerprint(loose)
    assert found.reason == "an artist in no figure has no picture to compare"
