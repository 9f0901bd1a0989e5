"""The Python families: plain values, named tuples, dataclasses, mappings, objects by their
attributes, random.Random, dates, enums, and code held by a value."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import logging
import random
import re
import sys
import threading
import zlib
from collections.abc import Iterator, Mapping

from det_nb.fingerprint import Fingerprint, describe_difference, fingerprint, snapshot


@dataclasses.dataclass
class Config:
    lr: float
    layers: list[int]
    name: str = "net"


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    seed: int


Point = collections.namedtuple("Point", "x y")


class FrozenMap(Mapping):
    """A read-only mapping, as flax's FrozenDict is."""

    def __init__(self, items: dict) -> None:
        self._items = dict(items)

    def __getitem__(self, key: object) -> object:
        return self._items[key]

    def __iter__(self) -> Iterator[object]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class Trainer:
    """A plain object holding results."""

    def __init__(self, seed: int) -> None:
        draws = random.Random(seed)
        self.history = [draws.random() for _ in range(3)]
        self.best = max(self.history)


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a: int) -> None:
        self.a = a  # b is never assigned


class Colour(enum.Enum):
    RED = 1
    GREEN = 2


def test_dataclasses_named_tuples_and_mappings_by_their_fields() -> None:
    assert fingerprint(Config(0.1, [3, 4])) == fingerprint(Config(0.1, [3, 4]))
    assert fingerprint(Config(0.1, [3, 4])).summary == "Config (3 fields)"
    assert describe_difference(Config(0.1, [3, 4]), Config(0.1, [3, 5]), "cfg") == (
        "cfg: Config: layers[1]: int differs by 1")
    assert describe_difference(Frozen(1), Frozen(2), "f") == "f: Frozen: seed: int differs by 1"
    assert describe_difference(Point(1, 2), Point(1, 2.5), "p") == "p: Point: y: type int vs float"
    assert fingerprint(Point(1, 2)) != fingerprint((1, 2))  # a named tuple is not a tuple
    frozen = FrozenMap({"params": {"w": [1.0, 2.0]}})
    assert fingerprint(frozen) == fingerprint(FrozenMap({"params": {"w": [1.0, 2.0]}}))
    assert describe_difference(frozen, FrozenMap({"params": {"w": [1.0, 2.5]}}), "state") == (
        "state['params']['w'][1]: float differs by 0.5")


def test_objects_by_their_attributes_and_slots() -> None:
    assert fingerprint(Trainer(3)) == fingerprint(Trainer(3))
    assert fingerprint(Trainer(3)).summary == "Trainer (2 attributes)"
    found = describe_difference(Trainer(3), Trainer(4), "trainer")
    assert found.startswith("trainer: Trainer: best: float differs by ")
    changed = Trainer(3)
    changed.history[2] += 1.0
    assert describe_difference(Trainer(3), changed, "trainer") == (
        "trainer: Trainer: history[2]: float differs by 1")
    assert fingerprint(Slotted(1)).summary == "Slotted (1 attribute)"
    assert describe_difference(Slotted(1), Slotted(2), "s") == "s: Slotted: a: int differs by 1"
    assert fingerprint(snapshot(Trainer(3))) == fingerprint(Trainer(3))


def test_generators_dates_enums_and_other_plain_values() -> None:
    a, b = random.Random(5), random.Random(5)
    assert fingerprint(a) == fingerprint(b)
    b.random()
    assert describe_difference(a, b, "r") == "r: Random state differs, so its next draws differ"
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert describe_difference(when, when.replace(second=6), "t") == (
        "t: datetime differs at position 18 (lengths 29 and 29)")
    assert fingerprint(datetime.timedelta(1)) != fingerprint(datetime.timedelta(2))
    assert describe_difference(Colour.RED, Colour.GREEN, "c") == (
        "c: Colour: name: str differs at position 0 (lengths 3 and 5)")
    assert fingerprint(Colour.RED).summary == "Colour.RED"
    assert fingerprint(range(3)) != fingerprint(range(4))
    assert fingerprint(collections.deque([1, 2])) == fingerprint(collections.deque([1, 2]))


def test_code_held_by_a_value_is_compared_by_name_and_unnamed_code_is_not() -> None:
    assert fingerprint({"f": random.random}) == fingerprint({"f": random.random})
    assert fingerprint({"f": random.random}) != fingerprint({"f": random.gauss})
    unnamed = fingerprint({"f": lambda: 1})
    assert unnamed.reason == (
        "at ['f']: lambdas and functions defined inside functions have no name to compare "
        "them by")


def test_values_that_cannot_be_compared_say_why_wherever_they_are() -> None:
    compressor = zlib.compressobj()  # a C object whose state is out of reach
    assert fingerprint(compressor).reason == "Compress is not a supported type"
    assert describe_difference([1, compressor], [1, zlib.compressobj()], "v") == (
        "v[1]: Compress: cannot be compared (Compress is not a supported type)")
    holder = Trainer(1)
    holder.guard = compressor
    assert fingerprint(holder).reason == "at guard: Compress is not a supported type"
    assert fingerprint(random.SystemRandom()).reason == (
        "SystemRandom draws from the operating system and has no state")
    assert isinstance(fingerprint(Trainer(1)), Fingerprint)


def test_a_dataclass_is_compared_by_every_field_and_every_other_attribute() -> None:
    """Fields left out of == count: users mark array fields compare=False so that == works,
    and those hold results. So do attributes set in __post_init__."""

    @dataclasses.dataclass
    class Run:
        loss: float
        weights: list[float] = dataclasses.field(compare=False)

        def __post_init__(self) -> None:
            self.best = min(self.weights)

    assert Run(0.5, [1.0, 2.0]) == Run(0.5, [1.0, 3.0])  # as Python sees it
    assert fingerprint(Run(0.5, [1.0, 2.0])) == fingerprint(Run(0.5, [1.0, 2.0]))
    assert fingerprint(Run(0.5, [1.0, 2.0])).summary == "Run (2 fields, 1 other attribute)"
    assert describe_difference(Run(0.5, [1.0, 2.0]), Run(0.5, [1.0, 3.0]), "run") == (
        "run: Run: weights[1]: float differs by 1")
    later = Run(0.5, [1.0, 2.0])
    later.best = 0.0
    assert describe_difference(Run(0.5, [1.0, 2.0]), later, "run") == (
        "run: Run: best: float differs by 1")
    assert fingerprint(snapshot(later)) == fingerprint(later)


class Timed:
    """A result that says what it is compared by: everything but its duration."""

    def __init__(self, loss: float, seconds: float) -> None:
        self.loss = loss
        self.seconds = seconds

    def _det_nb_value_(self) -> dict[str, object]:
        return {"loss": self.loss}


class Weighed:
    def __init__(self, weights: list[float], host: str) -> None:
        self.weights = weights
        self.host = host

    def _det_nb_value_(self) -> list[float]:
        return self.weights


class Broken:
    def _det_nb_value_(self) -> object:
        raise RuntimeError("not ready")


def test_a_class_says_what_its_value_is_with_det_nb_value() -> None:
    assert fingerprint(Timed(0.5, 1.2)) == fingerprint(Timed(0.5, 3.4))
    assert fingerprint(Timed(0.5, 1.2)).summary == "Timed (1 part)"
    assert describe_difference(Timed(0.5, 1.2), Timed(0.25, 1.2), "run") == (
        "run: Timed: loss: float differs by 0.25")
    assert fingerprint(Weighed([1.0], "a")) == fingerprint(Weighed([1.0], "b"))
    assert describe_difference(Weighed([1.0], "a"), Weighed([2.0], "a"), "w") == (
        "w: Weighed: _det_nb_value_()[0]: float differs by 1")
    assert fingerprint(Weighed([1.0], "a")) != fingerprint([1.0])
    assert fingerprint(Broken()).reason == "reading it raised RuntimeError: not ready"
    assert fingerprint(snapshot(Timed(0.5, 1.2))) == fingerprint(Timed(0.5, 3.4))


def test_trials_are_compared_without_where_and_how_long_they_ran() -> None:
    """det_nb's own results say so: a trial's worker and seconds, a verification's workers
    are facts of the run."""
    from det_nb.trials import TrialResult, TrialsResult, Verification

    def result(worker: str, seconds: float, loss: float = 0.25) -> TrialsResult:
        trial = TrialResult(0, 536987300, worker, seconds, {"loss": loss}, [], None, None)
        check = Verification(0, worker, worker + "'", [])
        return TrialsResult("t.ipynb", 42, "seedsequence", ("loss",), [trial], [check])

    assert fingerprint(result("tcp://a", 1.5)) == fingerprint(result("tcp://b", 2.5))
    assert describe_difference(result("tcp://a", 1.5), result("tcp://a", 1.5, 0.5), "r") == (
        "r: TrialsResult: trials[0]: TrialResult: collected['loss']: float differs by 0.25")


class History(list):
    """A list with a result of its own, as users subclass lists and dicts."""


class Tagged(dict):
    __slots__ = ("source",)


def test_attributes_of_a_list_dict_or_tuple_subclass_are_compared() -> None:
    first, second = History([0.5, 0.25]), History([0.5, 0.25])
    first.best, second.best = 0.25, 0.5
    assert fingerprint(first) != fingerprint(second)
    assert fingerprint(first).summary == "History (len 2) with 1 attribute"
    assert describe_difference(first, second, "h") == (
        "h: History: attributes['best']: float differs by 0.25")
    second.best = 0.25
    second[1] = 0.125
    assert describe_difference(first, second, "h") == (
        "h: History: contents[1]: float differs by 0.125")
    assert fingerprint(History([1])) == fingerprint(History([1]))  # no attributes: as before
    tagged, other = Tagged(a=1), Tagged(a=1)
    tagged.source, other.source = "x", "y"
    assert describe_difference(tagged, other, "t") == (
        "t: Tagged: attributes['source']: str differs at position 0 (lengths 1 and 1)")
    assert fingerprint(snapshot(first)) == fingerprint(first)
    kept = collections.OrderedDict(w=1)
    kept._metadata = {"version": 1}  # the standard library's classes: bookkeeping (torch's)
    assert fingerprint(kept) == fingerprint(collections.OrderedDict(w=1))


def test_an_enum_is_compared_by_name_and_value() -> None:
    """The same class defined again (a cell run twice) with another value differs."""

    def defined(value: int) -> enum.Enum:
        return enum.Enum("Mode", {"TRAIN": value})

    assert fingerprint(defined(1).TRAIN) == fingerprint(defined(1).TRAIN)
    assert describe_difference(defined(1).TRAIN, defined(2).TRAIN, "m") == (
        "m: Mode: value: int differs by 1")


def test_patterns_by_pattern_and_flags() -> None:
    assert fingerprint(re.compile("a+")) == fingerprint(re.compile("a+"))
    assert describe_difference(re.compile("a+"), re.compile("a*"), "pat") == (
        "pat: Pattern: pattern: str differs at position 1 (lengths 2 and 2)")
    assert describe_difference(re.compile("a+"), re.compile("a+", re.I), "pat") == (
        "pat: Pattern: flags: int differs by 2")


def test_threading_objects_hold_no_result_and_are_compared_by_kind() -> None:
    for build in (threading.Lock, threading.RLock, threading.Condition, threading.Semaphore,
                  threading.Event):
        first, second = build(), build()
        assert isinstance(fingerprint(first), Fingerprint)
        assert fingerprint(first) == fingerprint(second)
    held = threading.Lock()
    held.acquire()  # no result either way
    assert fingerprint(held) == fingerprint(threading.Lock())
    assert describe_difference(threading.Lock(), threading.Event(), "guard") == (
        "guard: type lock vs Event")
    holder, other = Trainer(1), Trainer(1)
    holder.guard, other.guard = threading.RLock(), threading.RLock()
    assert fingerprint(holder) == fingerprint(other)


def test_loggers_and_handlers_by_what_decides_their_output() -> None:
    def logger(name: str, level: int, fmt: str) -> logging.Logger:
        made = logging.Logger(name, level)  # not registered: a fresh one per call
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(fmt))
        made.addHandler(handler)
        return made

    assert fingerprint(logger("nb", 10, "%(message)s")) == fingerprint(
        logger("nb", 10, "%(message)s"))
    assert describe_difference(logger("nb", 10, "%(message)s"), logger("nb", 20, "%(message)s"),
                               "log") == "log: Logger: level: int differs by 10"
    assert describe_difference(
        logger("nb", 10, "%(message)s"), logger("nb", 10, "%(name)s %(message)s"), "log"
    ).startswith("log: Logger: handlers[0]: StreamHandler: format: str differs")
    to_out = logging.StreamHandler(sys.stdout)
    assert describe_difference(logging.StreamHandler(sys.stderr), to_out, "h").startswith(
        "h: StreamHandler: stream: str differs")
