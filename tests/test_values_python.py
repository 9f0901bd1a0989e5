"""The Python families: plain values, named tuples, dataclasses, mappings, objects by their
attributes, random.Random, dates, enums, and code held by a value."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import random
import threading
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
        "c: Colour differs at position 0 (lengths 3 and 5)")
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
    lock = threading.Lock()
    assert fingerprint(lock).reason == "lock is not a supported type"
    assert describe_difference([1, lock], [1, threading.Lock()], "v") == (
        "v[1]: lock: cannot be compared (lock is not a supported type)")
    holder = Trainer(1)
    holder.guard = lock
    assert fingerprint(holder).reason == "at guard: lock is not a supported type"
    assert fingerprint(random.SystemRandom()).reason == (
        "SystemRandom draws from the operating system and has no state")
    assert isinstance(fingerprint(Trainer(1)), Fingerprint)


def test_a_dataclass_field_left_out_of_equality_is_left_out_of_the_comparison() -> None:
    @dataclasses.dataclass
    class Run:
        loss: float
        seconds: float = dataclasses.field(compare=False)  # a fact of the run, not a result

    assert fingerprint(Run(0.5, 1.2)) == fingerprint(Run(0.5, 3.4))
    assert describe_difference(Run(0.5, 1.2), Run(0.25, 1.2), "run") == (
        "run: Run: loss: float differs by 0.25")
