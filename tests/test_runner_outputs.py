"""Cell outputs compared as a reader sees them: the same printed text however the kernel cut
it, stderr too, progress bars by their last drawing, timings and addresses masked (and
nothing else), the user's patterns."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_output

from det_nb.notebook_runner.outputs import (
    BUILT_IN,
    first_differing_line,
    load_sanitize_file,
    outputs_digest,
    reader_text,
    svg_as_seen,
)


def stdout(*chunks: str) -> list:
    return [new_output("stream", name="stdout", text=chunk) for chunk in chunks]


def stderr(text: str) -> list:
    return [new_output("stream", name="stderr", text=text)]


def _cut(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(cut for cut in cuts if cut <= len(text))})
    return [text[a:b] for a, b in itertools.pairwise(points)]


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(out=TEXT, err=TEXT, out_cuts=st.lists(st.integers(0, 60), max_size=8),
       err_cuts=st.lists(st.integers(0, 60), max_size=8), order=st.lists(st.booleans()))
def test_printed_text_is_the_same_however_the_flushes_cut_and_interleave_it(
    out, err, out_cuts, err_cuts, order
):
    """Each stream is flushed on its own clock: its text is cut anywhere, and stdout's and
    stderr's chunks arrive in any order."""
    chunks = {"stdout": _cut(out, out_cuts), "stderr": _cut(err, err_cuts)}
    outputs = []
    for from_stderr in [*order, *[False] * len(chunks["stdout"]), *[True] * len(
            chunks["stderr"])]:
        name = "stderr" if from_stderr else "stdout"
        if chunks[name]:
            outputs.append(new_output("stream", name=name, text=chunks[name].pop(0)))
    whole = stdout(out) + stderr(err)
    assert outputs_digest(outputs) == outputs_digest(whole)
    assert reader_text(outputs) == reader_text(whole)


def test_stderr_is_compared_as_a_reader_sees_it():
    """Warnings, logging and print(file=sys.stderr) are outputs a reader sees."""
    logged = stdout("done\n") + stderr("WARNING:root:accuracy 412\n")
    assert reader_text(logged) == "done\n\n[stderr]\nWARNING:root:accuracy 412\n"
    assert outputs_digest(logged) != outputs_digest(
        stdout("done\n") + stderr("WARNING:root:accuracy 977\n"))
    assert outputs_digest(stderr("x\n")) != outputs_digest(stdout("x\n"))
    # a warning from a cell names the kernel's file for it, which holds the kernel's pid
    warned = "/tmp/ipykernel_{}/2396612925.py:2: UserWarning: careful\n  warnings.warn('careful')\n"
    assert reader_text(stderr(warned.format(1234))) == reader_text(stderr(warned.format(98))) == (
        "[stderr]\n" + warned.format("<pid>"))
    assert reader_text(stderr(warned.format(1).replace("careful", "odd"))) != reader_text(
        stderr(warned.format(1)))


def test_outputs_of_different_kinds_stay_apart():
    printed = stdout("5\n")
    returned = [new_output("execute_result", data={"text/plain": "5"}, execution_count=1)]
    assert outputs_digest(printed) != outputs_digest(returned)
    assert reader_text(returned) == "[execute_result text/plain]\n5"
    assert outputs_digest(stdout("a\n") + returned) != outputs_digest(returned + stdout("a\n"))


def test_a_progress_bar_is_compared_by_its_last_drawing():
    # Keras 3's Progbar in a kernel: backspaces over the previous drawing, a carriage
    # return, colour codes, and padding over a longer earlier drawing. How many drawings
    # there are depends on time.
    def bar(step: int, text: str, previous: int) -> str:
        return ("\b" * previous + "\r" + f"\x1b[1m{step}/3\x1b[0m \x1b[32m{'━' * step}\x1b[0m"
                + text)

    few = bar(1, " \x1b[1m1s\x1b[0m 12ms/step - loss: 0.7000", 0) + bar(
        3, " \x1b[1m0s\x1b[0m 5ms/step - loss: 0.6931   ", 40) + "\n"
    many = "".join(bar(step, f" \x1b[1m{9 - step}s\x1b[0m 150ms/step - loss: 0.7{step}", 30)
                   for step in (1, 2)) + bar(3, " \x1b[1m2s\x1b[0m 812ms/step - loss: 0.6931",
                                             33) + "\n"
    assert reader_text(stdout(few)) == reader_text(stdout(many)) == (
        "3/3 ━━━ <time> <time>/step - loss: 0.6931\n")
    assert reader_text(stdout(few.replace("0.6931", "0.6932"))) != reader_text(stdout(few))


@pytest.mark.parametrize(("printed", "shown"), [
    # Keras 3, verbose=2, and Keras 2's bar
    ("3/3 - 0s - 5ms/step - loss: 0.69\n", "3/3 - <time> - <time>/step - loss: 0.69\n"),
    ("10/10 [====] - 1s 85us/sample - loss: 0.1\n", "10/10 [====] - <time> <time>/sample - "
     "loss: 0.1\n"),
    ("Epoch 1/3 ETA: 1:02 - acc: 0.5\n", "Epoch 1/3 ETA: <time> - acc: 0.5\n"),
    # tqdm, with and without a total and a postfix
    ("100%|██████████| 30/30 [00:00<00:00, 472.53it/s]\n",
     "100%|██████████| 30/30 [<elapsed><<remaining>, <rate>]\n"),
    (" 50%|█████     | 5/10 [01:02:03<?, 1.25s/it, loss=0.1]\n",
     " 50%|█████     | 5/10 [<elapsed><<remaining>, <rate>, loss=0.1]\n"),
    ("12it [00:03, 3.99it/s]\n", "12it [<elapsed>, <rate>]\n"),
    ("63.2MB [00:01, 41.2MB/s]\n", "63.2MB [<elapsed>, <rate>]\n"),
    ("speed 12.5 it/s, then 3s/it\n", "speed <rate>, then <rate>\n"),
    # %timeit, with the warning some runs print, and %%time
    ("The slowest run took 5.21 times longer than the fastest. This could mean that an "
     "intermediate result is being cached.\n1.23 µs ± 45.6 ns per loop (mean ± std. dev. of "
     "7 runs, 1,000,000 loops each)\n", "<timeit: time per loop>\n"),
    ("2min 3s ± 1.2 s per loop (mean ± std. dev. of 1 run, 1 loop each)\n",
     "<timeit: time per loop>\n"),
    ("CPU times: user 1.2 ms, sys: 0 ns, total: 1.2 ms\nWall time: 2.05 ms\nCompiler : 120 ms\n",
     "CPU times: <times>\nWall time: <time>\n"),
    ("<Line2D at 0x7f3a2b1c4d90> <function f at 0x10fe12340>\n",
     "<Line2D at 0x<address>> <function f at 0x<address>>\n"),
    # what no pattern is about stays: a short number after "at", hexadecimal results
    ("loss 0.5 after 3 s at 0x12 speed 5 m/s\n", "loss 0.5 after 3 s at 0x12 speed 5 m/s\n"),
    ("results checksum 0x1c3b4f2a9d\n", "results checksum 0x1c3b4f2a9d\n"),
    ("crc=0x7f3a2b1c4d90 (0x7f3a2b1c4d91)\n", "crc=0x7f3a2b1c4d90 (0x7f3a2b1c4d91)\n"),
])
def test_volatile_text_is_replaced_by_placeholders(printed, shown):
    assert reader_text(stdout(printed)) == shown


def test_a_real_tqdm_bar_reads_the_same_whatever_its_timing():
    """tqdm draws on stderr by default: its times and rates are masked there too."""
    from tqdm import tqdm

    texts = []
    for interval, pause in ((0, 0.0), (0.01, 0.002)):
        out = io.StringIO()
        for _ in tqdm(range(30), file=out, mininterval=interval):
            time.sleep(pause)
        texts.append(reader_text(stderr(out.getvalue())))
    assert texts[0] == texts[1] == (
        "[stderr]\n100%|##########| 30/30 [<elapsed><<remaining>, <rate>]\n")


def test_real_timeit_and_time_reports_read_the_same(shell):
    texts = []
    for loops in (10, 200):  # different numbers, different times
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            shell.run_line_magic("timeit", f"-n {loops} -r 3 sum(range(100))")
            shell.run_cell_magic("time", "", "sum(range(1000))")
        texts.append(reader_text(stdout(printed.getvalue())))
    assert texts[0] == texts[1] == (
        "<timeit: time per loop>\nCPU times: <times>\nWall time: <time>\n")


def test_rich_outputs_images_and_errors():
    image = [new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain":
                                               "<Figure size 640x480 with 1 Axes>"})]
    error = [new_output("error", ename="ValueError", evalue="bad <X at 0x7f00aa00bb00>",
                        traceback=["..."])]
    text = reader_text(image + error)
    lines = text.split("\n")
    assert lines[:2] == ["[display_data text/plain]", "<Figure size 640x480 with 1 Axes>"]
    assert lines[2].startswith("[display_data image/png] ") and len(lines[2]) == 57
    assert lines[3] == "[error] ValueError: bad <X at 0x<address>>"
    other = [new_output("display_data", data={"image/png": "iVBORw0KGgp=", "text/plain":
                                               "<Figure size 640x480 with 1 Axes>"})]
    assert outputs_digest(other + error) != outputs_digest(image + error)
    dashboard = [new_output("display_data", data={
        "text/html": '<div class="det-nb-dashboard">seed 42</div>', "text/plain": "x"})]
    assert reader_text(dashboard) == ""


def test_first_differing_line():
    assert first_differing_line("a\nb\nc", "a\nb\nc") is None
    assert first_differing_line("a\nb\nc", "a\nB\nc") == (2, "b", "B")
    assert first_differing_line("a", "a\nmore") == (2, None, "more")


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_sanitize_file_in_nbval_format_adds_patterns(tmp_path):
    sanitize = write(tmp_path / "sanitize.cfg", (
        "[regex1]\nregex: \\d{4}-\\d\\d-\\d\\d\nreplace: DATE\n\n"
        "# the run's own folder\n[folder]\nregex: /tmp/run-(\\w+)\nreplace: /tmp/run-<\\1>\n"
        "[empty]\nregex: noise \nreplace:\n"))
    sanitizer = load_sanitize_file(sanitize)
    assert reader_text(stdout("on 2026-12-04 in /tmp/run-abc: noise done\n"), sanitizer) == (
        "on DATE in /tmp/run-<abc>: done\n")
    assert reader_text(stdout("on 2026-12-04\n")) == "on 2026-12-04\n"  # built-ins only
    assert reader_text(stdout("at 0x7f3a2b1c4d90\n"), sanitizer) == "at 0x<address>\n"


@pytest.mark.parametrize(("content", "says"), [
    ("regex: (unclosed\nreplace: x\n", "line 1: bad regular expression: missing ), "
     "unterminated subpattern at position 0"),
    ("regex: a\nreplace: \\2\n", "line 2: bad replacement: invalid group reference 2"),
    ("regex: a\n", "line 1: a 'regex:' line without its 'replace:' line"),
    ("regex: a\nregex: b\nreplace: c\n", "line 2: a 'regex:' line must be followed by a "
     "'replace:' line"),
    ("replace = x\n", "line 1: expected 'regex: PATTERN' followed by 'replace: TEXT', "
     "got 'replace = x'"),
    ("# nothing\n", "has no 'regex:'/'replace:' pair"),
])
def test_a_bad_sanitize_file_is_refused_in_one_line(tmp_path, content, says):
    path = write(tmp_path / "bad.cfg", content)
    with pytest.raises(ValueError) as refused:
        load_sanitize_file(path)
    message = str(refused.value)
    assert message.startswith(f"sanitize file {str(path)!r}") and "\n" not in message
    assert says in message


def test_a_sanitize_file_is_read_through_det_nbs_file_checks(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="is a FIFO, not a regular file"):
        load_sanitize_file(tmp_path / "fifo")
    (tmp_path / "latin.cfg").write_bytes(b"regex: \xe9\nreplace: e\n")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        load_sanitize_file(tmp_path / "latin.cfg")
    with pytest.raises(ValueError, match="does not exist"):
        load_sanitize_file(tmp_path / "missing.cfg")


def test_built_in_text_is_normalised_once():
    assert BUILT_IN.text(["a \n", "b\t\n"]) == "a\nb\n"


def _matplotlib_svg(ys: list[float]) -> str:
    """A real matplotlib figure drawn as SVG, as ``%config InlineBackend.figure_formats =
    ['svg']`` sends it: a fresh date and freshly salted ids each time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([1, 2, 3], ys)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    return buffer.getvalue()


def _svg_output(svg: str) -> list:
    return [new_output("display_data", data={"image/svg+xml": svg,
                                             "text/plain": "<Figure size 640x480 with 1 Axes>"})]


def test_an_svg_figure_is_compared_as_a_reader_sees_it():
    first, second = _matplotlib_svg([1, 4, 9]), _matplotlib_svg([1, 4, 9])
    assert "<dc:date>" in first and "clip-path=\"url(#" in first
    assert first != second  # salted ids (and the date, whenever the clock ticked)
    assert outputs_digest(_svg_output(first)) == outputs_digest(_svg_output(second))
    changed = _matplotlib_svg([1, 4, 9.5])
    assert outputs_digest(_svg_output(changed)) != outputs_digest(_svg_output(first))


def test_svg_ids_are_renamed_with_every_reference_and_colours_kept():
    svg = ('<svg><metadata><dc:date>2026</dc:date></metadata><defs><path id="m1a2b"/>'
           '<clipPath id="p9f"/></defs><use xlink:href="#m1a2b" style="fill: #1f77b4"/>'
           '<g clip-path="url(#p9f)"/></svg>')
    assert svg_as_seen(svg) == ('<svg><defs><path id="id1"/><clipPath id="id2"/></defs>'
                                '<use xlink:href="#id1" style="fill: #1f77b4"/>'
                                '<g clip-path="url(#id2)"/></svg>')
    other = svg.replace("m1a2b", "zz").replace("p9f", "qq").replace("2026", "2027")
    assert svg_as_seen(other) == svg_as_seen(svg)
    swapped = svg.replace('xlink:href="#m1a2b"', 'xlink:href="#p9f"')
    assert svg_as_seen(swapped) != svg_as_seen(svg)  # which element is used still counts
