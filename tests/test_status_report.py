"""The report's text and HTML, exactly, for known checks: what terminals, nbval and exports see."""

from __future__ import annotations

import pytest

from det_nb.lineage import Lineage
from det_nb.status import Check, Report

# The caveat (hash randomisation) comes before the warning that breaks reproducibility:
# the verdict names the breaking one first all the same.
CHECKS = (
    Check("python random", "ok", "random.seed(1129302213); no draws since seeding"),
    Check("hash randomisation", "warn", "on", "restart with PYTHONHASHSEED=0", caveat=True),
    Check("tensorflow threads", "warn", "default <pools> & more", "%det_seed 42 --threads 1"),
    Check("per-cell seeding", "off", "off", "%det_seed SEED --per-cell"),
)
REPORT = Report(Lineage(42, 3), CHECKS)


def test_text_is_the_verdict_the_lineage_then_one_line_per_check_with_its_fix() -> None:
    assert REPORT.text().splitlines() == [
        "NOT reproducible: 1 ok, 2 warn, 1 off (tensorflow threads: %det_seed 42 --threads 1; "
        "1 more warn below)",
        "det_nb: experiment seed 42 -> trial 3 -> trial seed 1129302213 [seedsequence]",
        "[ok  ] python random: random.seed(1129302213); no draws since seeding",
        "[warn] hash randomisation: on",
        "       fix: restart with PYTHONHASHSEED=0",
        "[warn] tensorflow threads: default <pools> & more",
        "       fix: %det_seed 42 --threads 1",
        "[off ] per-cell seeding: off",
        "       fix: %det_seed SEED --per-cell",
    ]
    assert str(REPORT) == REPORT.text()


def test_text_before_seeding_says_what_to_run_and_has_no_lineage_line() -> None:
    report = Report(None, CHECKS[:1])
    assert report.text().splitlines() == [
        "not seeded yet: run %det_seed SEED to make this kernel reproducible; 1 ok, 0 warn, 0 off",
        "[ok  ] python random: random.seed(1129302213); no draws since seeding",
    ]


def test_caveats_alone_leave_the_run_reproducible() -> None:
    report = Report(Lineage(42), CHECKS[:2])
    assert report.text().splitlines()[:2] == [
        "reproducible on this machine: 1 ok, 1 warn, 0 off (hash randomisation: "
        "restart with PYTHONHASHSEED=0)",
        "det_nb: experiment seed 42 -> trial none -> trial seed 42 [seedsequence]",
    ]


def test_html_holds_the_same_content_escaped_in_a_table() -> None:
    html = REPORT.html()
    assert html.startswith('<div class="det-nb-report"><p class="det-nb-verdict" '
                           'style="color:#cf222e;font-weight:bold">NOT reproducible: ')
    assert ("<p>det_nb: experiment seed 42 -&gt; trial 3 -&gt; trial seed 1129302213 "
            "[seedsequence]</p>") in html
    assert ('<tr><td style="color:#b35900;font-weight:bold">warn</td>'
            "<td>tensorflow threads</td><td>default &lt;pools&gt; &amp; more</td>"
            "<td>%det_seed 42 --threads 1</td></tr>") in html
    assert ('<tr><td style="color:#6e7781;font-weight:bold">off</td><td>per-cell seeding</td>'
            "<td>off</td><td>%det_seed SEED --per-cell</td></tr>") in html
    assert html.count("<tr>") == 1 + len(CHECKS) and html.endswith("</table></div>")
    assert "<pools>" not in html
    assert REPORT._repr_html_() == html


@pytest.mark.parametrize("field", ["name", "detail", "fix"])
def test_markup_in_any_field_is_shown_as_text_not_run(field: str) -> None:
    hostile = '<script>alert("x")</script>'
    check = Check(**{"name": "n", "state": "warn", "detail": "d", "fix": "f", field: hostile})
    html = Report(Lineage(42), (check,)).html()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_a_check_state_must_be_ok_warn_or_off() -> None:
    with pytest.raises(ValueError, match=r"^state must be one of ok, warn, off, got 'bad'$"):
        Check("x", "bad", "d")
