"""Cell outputs compared as a reader sees them, not as the kernel happened to send them.

What a reader of a notebook sees is stable where the bytes the kernel sends are not:

- Printed text arrives in stream outputs cut by the kernel's timed flushes, so a loop
  that prints with a short sleep gives three outputs in one run and five in another.
  Stream outputs are joined per stream (stdout, stderr) between two rich outputs before
  anything is compared: each stream is flushed on its own clock, so how stdout and
  stderr interleave is timing, while what each says, and what comes before a display or
  an error, is not.
- A progress bar redraws its line with carriage returns and backspaces as often as time
  allows; a reader sees the last drawing. The text is rendered as a terminal shows it:
  colour codes dropped, ``\\r`` and ``\\b`` applied, trailing spaces (padding over an
  earlier, longer drawing) removed.
- Durations, rates and memory addresses differ in every run whatever the seed. Built-in
  patterns (:data:`BUILT_IN_PATTERNS`) replace them with placeholders: Keras progress
  bars (``ms/step``, ``ETA``, elapsed seconds), tqdm (``it/s``, ``[00:01<00:02, ...]``),
  ``%timeit`` and ``%%time`` reports, memory addresses in object reprs (``<... at
  0x7f...>``; other hexadecimal numbers, a printed checksum, are compared), the kernel's
  process id in the file names it gives cells (warnings name them). A user adds regular
  expressions in a file of nbval's sanitize format (:func:`load_sanitize_file`).

stderr is compared like stdout (warnings, logging, tqdm's default stream), after a
``[stderr]`` line. Left out entirely: widget model ids, execution counts, and det_nb's own
dashboard (it shows the environment, which the run records compare). Images and other
binary outputs are compared by a hash; an SVG image as a reader sees it (:func:`svg_as_seen`):
without its metadata block (matplotlib writes the time it was drawn there) and with its
element ids, which matplotlib salts at random, renamed by order of first appearance.

:func:`reader_text` is the normalised text of a cell's outputs; :func:`outputs_digest`
hashes exactly that text, so two cells whose digests differ always show a differing line
(:func:`first_differing_line`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: det_nb's dashboard: it describes the environment, which the run records compare.
_DASHBOARD_MARK = 'class="det-nb-dashboard"'
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: Terminal control sequences: colours (CSI ... m), cursor moves, window titles (OSC).
_CONTROL_SEQUENCE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_CARRIAGE_RETURN_NEWLINE = re.compile(r"\r+\n")
_TRAILING_BLANKS = re.compile(r"[ \t]+$", re.MULTILINE)
#: An SVG's metadata block (matplotlib's ``<dc:date>``, creator, ...): nothing a reader sees.
_SVG_METADATA = re.compile(r"<metadata\b.*?</metadata>\s*|<metadata\b[^>]*/>\s*", re.DOTALL)
_SVG_ID = re.compile(r"""\bid=(["'])(.*?)\1""")
#: Where an SVG refers to an id: ``url(#id)``, ``href="#id"``, ``xlink:href="#id"``, ...
_SVG_REFERENCE = re.compile(r"#([^\s\"'()#;,]+)")
#: A sanitize file larger than this is refused before it is read.
MAX_SANITIZE_BYTES = 1_000_000

# A duration as IPython and Keras print them: "1.23 ms", "456 µs", "2min 3s", "1e+03 ns".
_UNIT = r"(?:ns|[uµμ]s|ms|s|min|h|d)"
_DURATION = rf"\d+(?:\.\d+)?(?:e[-+]?\d+)? ?{_UNIT}(?: \d+(?:\.\d+)? ?{_UNIT})*"
_CLOCK = r"(?:\d+:)?\d\d:\d\d"  # tqdm's 00:01 and 1:02:03

#: (name, pattern, replacement), applied in this order with ``re.MULTILINE``.
BUILT_IN_PATTERNS: tuple[tuple[str, str, str], ...] = (
    # %timeit: the warning appears in some runs only, the report's numbers in all.
    ("%timeit warning", r"^The slowest run took [\d.]+ times longer than the fastest\. This "
     r"could mean that an intermediate result is being cached\.\n", ""),
    ("%timeit report", rf"{_DURATION} (?:±|\+-) {_DURATION} per loop \(mean (?:±|\+-) std\. "
     r"dev\. of [\d,]+ runs?, [\d,]+ loops? each\)", "<timeit: time per loop>"),
    ("%timeit compile time", r"^Compiler time: [\d.]+ s\n", ""),
    # %%time and %time
    ("%time CPU times", r"^CPU times: .*$", "CPU times: <times>"),
    ("%time wall time", r"^Wall time: .*$", "Wall time: <time>"),
    ("%time compile and parse times", rf"^(?:Compiler|Parser) *: {_DURATION}\n", ""),
    # Keras: "3/3 ━━━━ 0s 5ms/step", "ETA: 1:02", "3/3 - 0s - 5ms/step" (verbose=2)
    ("Keras time per step", r"\b\d+(?:ms|us|µs|s)/(step|sample|epoch)\b", r"<time>/\1"),
    ("Keras elapsed time and ETA", r"(?:\b(?:\d+:)?\d+(?::\d\d)?s?)(?=(?: -)? <time>/)",
     "<time>"),
    ("Keras 2 ETA", r"\bETA: (?:\d+:)?\d+(?::\d\d)?s?", "ETA: <time>"),
    # tqdm: "100%|████| 10/10 [00:01<00:00,  9.95it/s, loss=0.1]", "5it [00:00, 2.1s/it]"
    ("tqdm elapsed time", rf"\[{_CLOCK}(?=[<,\]])", "[<elapsed>"),
    ("tqdm remaining time", rf"(?<=\[<elapsed>)<(?:{_CLOCK}|\?)", "<<remaining>"),
    ("tqdm rate", r"(?P<before>(?:<elapsed>|<remaining>), *)(?:\d+(?:\.\d+)?|\?) ?"
     r"[^\s,\]/]*/[^\s,\]]+", r"\g<before><rate>"),
    ("iterations per second", r"\b\d+(?:\.\d+)?[kMG]? ?(?:it/s|s/it)\b", "<rate>"),
    # Object reprs: <Line2D at 0x7f...>, <function f at 0x...>; not any hexadecimal number
    ("memory address", r"(?<=\bat )0x[0-9a-fA-F]{6,16}\b", "0x<address>"),
    # ipykernel's file names for cells, in warnings: /tmp/ipykernel_12345/1234567.py:3
    ("kernel process id", r"\bipykernel_\d+(?=[/\\])", "ipykernel_<pid>"),
)
_COMPILED_BUILT_INS = tuple((re.compile(pattern, re.MULTILINE), replacement)
                            for _, pattern, replacement in BUILT_IN_PATTERNS)


@dataclass(frozen=True)
class Sanitizer:
    """How output text is normalised: the built-in patterns, then the user's (in order)."""

    user_patterns: tuple[tuple[re.Pattern[str], str], ...] = ()

    def text(self, text: str | list[str]) -> str:
        """Output text as a reader sees it, volatile parts replaced by placeholders."""
        joined = text if isinstance(text, str) else "".join(text)
        shown = _TRAILING_BLANKS.sub("", _as_displayed(_CONTROL_SEQUENCE.sub("", joined)))
        for pattern, replacement in (*_COMPILED_BUILT_INS, *self.user_patterns):
            shown = pattern.sub(replacement, shown)
        return shown


#: Built-in patterns only.
BUILT_IN = Sanitizer()


def load_sanitize_file(path: str | os.PathLike[str]) -> Sanitizer:
    """A :class:`Sanitizer` with the patterns of a sanitize file; ValueError (one line) if bad.

    The format is nbval's (``--nbval-sanitize-with``): pairs of lines ``regex: PATTERN``
    and ``replace: TEXT``, each taken to the end of its line; ``[section]`` lines, blank
    lines and lines starting with ``#`` are allowed between pairs. Patterns are Python
    regular expressions, replacements may use ``\\1`` and ``\\g<name>``; they apply after
    the built-in ones, to the normalised text, without flags (write ``(?m)`` for
    line-anchored patterns).
    """
    from det_nb.files import printable, read_limited, shown

    where = f"sanitize file {shown(path)}"
    raw = read_limited(path, "sanitize file", MAX_SANITIZE_BYTES)
    try:
        lines = raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{where} is not UTF-8 text") from None
    patterns: list[tuple[re.Pattern[str], str]] = []
    pending: tuple[int, re.Pattern[str]] | None = None
    for number, line in enumerate(lines, start=1):
        if pending is not None:
            if not line.startswith("replace: ") and line != "replace:":
                raise ValueError(f"{where}, line {number}: a 'regex:' line must be followed "
                                 "by a 'replace:' line")
            replacement = line.removeprefix("replace:").removeprefix(" ")
            try:
                pending[1].sub(replacement, "")  # a bad group reference raises here
            except (re.error, IndexError) as error:
                raise ValueError(f"{where}, line {number}: bad replacement: "
                                 f"{printable(str(error))}") from None
            patterns.append((pending[1], replacement))
            pending = None
        elif line.startswith("regex: ") or line == "regex:":
            try:
                pending = (number, re.compile(line.removeprefix("regex:").removeprefix(" ")))
            except re.error as error:
                raise ValueError(f"{where}, line {number}: bad regular expression: "
                                 f"{printable(str(error))}") from None
        elif line.strip() and not line.startswith(("#", "[")):
            raise ValueError(f"{where}, line {number}: expected 'regex: PATTERN' followed by "
                             f"'replace: TEXT', got {printable(line)[:80]!r}")
    if pending is not None:
        raise ValueError(f"{where}, line {pending[0]}: a 'regex:' line without its "
                         "'replace:' line")
    if not patterns:
        raise ValueError(f"{where} has no 'regex:'/'replace:' pair")
    return Sanitizer(tuple(patterns))


def reader_text(outputs: Sequence[Any], sanitizer: Sanitizer = BUILT_IN) -> str:
    """A cell's outputs as one normalised text (see the module docstring).

    Stream text is joined per stream between rich outputs and rendered: stdout's text,
    then stderr's after a ``[stderr]`` line; each rich output starts with a line naming its
    kind and type (``[execute_result text/plain]``), followed by its normalised text, or
    carries a hash of its data for binary types; an error reads ``[error] Name: message``.
    """
    parts: list[str] = []
    streams: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def end_stream() -> None:
        for name, texts in streams.items():
            joined = "".join(texts)
            texts.clear()
            if joined:  # an empty stream output shows nothing
                text = sanitizer.text(joined)
                parts.append(text if name == "stdout" else f"[{name}]\n{text}")

    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            text = output.get("text", "")
            streams.setdefault(str(output.get("name")), []).append(
                text if isinstance(text, str) else "".join(text))
            continue
        if kind in ("display_data", "execute_result"):
            data = output.get("data", {})
            if _DASHBOARD_MARK in _joined(data.get("text/html", "")):
                continue
            end_stream()
            for mime in sorted(data, key=lambda mime: (mime != "text/plain", mime)):
                if mime == _WIDGET_MIME:
                    continue
                parts.append(_rich_part(kind, mime, data[mime], sanitizer))
        elif kind == "error":
            end_stream()
            parts.append(f"[error] {error_text(output, sanitizer)}")
    end_stream()
    return "\n".join(parts)


def error_text(output: Any, sanitizer: Sanitizer = BUILT_IN) -> str:
    """An error output as ``Name: message`` (message normalised, on one line)."""
    message = sanitizer.text(str(output.get("evalue", ""))).strip().replace("\n", " ")
    return f"{output.get('ename')}: {message}"


def outputs_digest(outputs: Sequence[Any], sanitizer: Sanitizer = BUILT_IN) -> str:
    """A hash of :func:`reader_text`: equal for outputs a reader sees as the same."""
    return text_digest(reader_text(outputs, sanitizer))


def text_digest(text: str) -> str:
    """The hash of a normalised outputs text (hex, 128 bits)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def first_differing_line(first: str, second: str) -> tuple[int, str | None, str | None] | None:
    """(1-based line number, the line in ``first``, in ``second``) where two texts first
    differ; a text that ends before gives None there. None when they are equal."""
    a_lines, b_lines = first.split("\n"), second.split("\n")
    for number in range(1, max(len(a_lines), len(b_lines)) + 1):
        a = a_lines[number - 1] if number <= len(a_lines) else None
        b = b_lines[number - 1] if number <= len(b_lines) else None
        if a != b:
            return number, a, b
    return None


def _rich_part(kind: str, mime: str, value: object, sanitizer: Sanitizer) -> str:
    header = f"[{kind} {mime}]"
    if mime.startswith("text/"):
        return f"{header}\n{sanitizer.text(_joined(value))}"
    if mime == "image/svg+xml":
        encoded = svg_as_seen(_joined(value))
    elif isinstance(value, (dict, list)) or mime.endswith("json"):
        encoded = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:  # base64 images and other binary data
        encoded = _joined(value)
    return f"{header} {text_digest(encoded)}"


def svg_as_seen(svg: str) -> str:
    """``svg`` without what a reader cannot see and no seed fixes: its metadata block
    (matplotlib's ``<dc:date>``) and the names of its ids (matplotlib salts them with
    uuid4). Each id defined (``id="..."``) is renamed ``id1``, ``id2``, ... by order of first
    appearance, and so is every reference to it (``#id``, ``url(#id)``,
    ``xlink:href="#id"``); a ``#`` that names no id (a colour such as ``#1f77b4``) stays."""
    svg = _SVG_METADATA.sub("", svg)
    renamed: dict[str, str] = {}
    for match in _SVG_ID.finditer(svg):
        renamed.setdefault(match.group(2), f"id{len(renamed) + 1}")
    if not renamed:
        return svg
    svg = _SVG_ID.sub(lambda m: f"id={m.group(1)}{renamed[m.group(2)]}{m.group(1)}", svg)
    return _SVG_REFERENCE.sub(
        lambda m: "#" + renamed[m.group(1)] if m.group(1) in renamed else m.group(0), svg)


def _joined(value: object) -> str:
    """nbformat stores text either as a string or as a list of lines."""
    if isinstance(value, list):
        return "".join(str(item) for item in value)
    return str(value)


def _as_displayed(text: str) -> str:
    """``text`` as a terminal shows it: ``\\r`` returns to the line's start and what follows
    overwrites it, ``\\b`` steps back one character."""
    if "\r" not in text and "\b" not in text:
        return text
    lines = []
    for line in _CARRIAGE_RETURN_NEWLINE.sub("\n", text).split("\n"):
        if "\r" not in line and "\b" not in line:
            lines.append(line)
            continue
        screen: list[str] = []
        cursor = 0
        for char in line:
            if char == "\r":
                cursor = 0
            elif char == "\b":
                cursor = max(0, cursor - 1)
            else:
                if cursor < len(screen):
                    screen[cursor] = char
                else:
                    screen.append(char)
                cursor += 1
        lines.append("".join(screen))
    return "\n".join(lines)
