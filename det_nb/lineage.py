"""Seed lineage: experiment seed -> trial -> trial seed, as a pure function.

Nothing here touches a PRNG's global state; the contract (with test vectors) is in
docs/lineage.md and pinned by ``tests/test_lineage.py``.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SEED = 2**31 - 1
SCHEMES = ("seedsequence", "determined")
# ``determined`` replays the master's MT19937 stream trial by trial; past this many trials
# the replay would take seconds, and no Determined experiment creates that many.
MAX_DETERMINED_TRIAL = 1_000_000
# Words the master draws per created trial: four for the request UUID, one for the seed.
_WORDS_PER_TRIAL = 5
# MT19937's state: 624 32-bit words.
_MT_WORDS = 624

ORIGINS = ("given", "assigned", "cluster")

_DECIMAL = re.compile(r"([+-]?)([0-9]+)", re.ASCII)
_MAX_DIGITS = 30  # more significant digits than any bound here: out of range, not parsed
_SHOWN_CHARS = 40  # a rejected value is cut to this many characters in messages


def validate_integer(value: object, name: str, low: int, high: int | None = None,
                     alternative: str = "") -> int:
    """``value`` as an int in [low, high] (no upper bound if None); ValueError otherwise.

    The one integer check behind seeds, trials, thread counts and runs, for the magics,
    the command line and the API alike. Accepts ints, integer scalars such as
    ``np.int64`` and strings of ASCII decimal digits (what a magic receives); rejects
    bools, floats, arrays and strings such as ``4.5``, ``1e3``, ``4_2`` or ``٤٢`` rather
    than guessing. ``alternative`` is appended to the rule, e.g. " (or None to ...)".
    The message quotes the value as given, ``repr``-style.
    """
    number = _as_integer(value)
    if number is None or number < low or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}{alternative}, got {_shown(value)}")
    return number


def _as_integer(value: object) -> int | None:
    """The integer ``value`` stands for, or None if it is not exactly an integer."""
    if isinstance(value, bool | float):
        return None
    if isinstance(value, str):
        match = _DECIMAL.fullmatch(value.strip())
        if match is None:
            return None
        sign, digits = match.groups()
        digits = digits.lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:  # out of every range here, and int() may refuse it
            return None
        return int(sign + digits)
    try:
        return operator.index(value)  # int, np.int64, 0-d integer arrays
    except TypeError:
        return None


def _shown(value: object) -> str:
    """``repr(value)``, short enough for a one-line message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not replace the message
        return f"a {type(value).__name__}"
    if "\n" in text:  # e.g. a multi-line array repr
        text = " ".join(text.split())
    if len(text) > _SHOWN_CHARS:
        text = f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"
    return text


def validate_seed(value: object, name: str = "seed") -> int:
    """Return ``value`` as an int in [0, 2**31 - 1], or raise ValueError saying what is allowed."""
    return validate_integer(value, name, 0, MAX_SEED)


def validate_scheme(scheme: str) -> str:
    """Return ``scheme`` if it is a known derivation scheme, else raise ValueError."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    return scheme


# NumPy's SeedSequence (numpy/random/bit_generator.pyx), in plain Python: deriving a seed
# must not load NumPy, whose CPU-kernel and thread pins det_nb sets before it loads.
_POOL_SIZE = 4
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_XSHIFT = 16
_MASK32 = 0xFFFFFFFF


def _words(number: int) -> list[int]:
    """A non-negative int as little-endian 32-bit words (0 is one word), as NumPy does."""
    words = [number & _MASK32]
    number >>= 32
    while number:
        words.append(number & _MASK32)
        number >>= 32
    return words


def _seedsequence_pool(entropy: int, spawn_key: tuple[int, ...]) -> list[int]:
    """SeedSequence's mixed entropy pool (``mix_entropy`` of its assembled entropy)."""
    run = _words(entropy)
    spawn = [word for key in spawn_key for word in _words(key)]
    if spawn and len(run) < _POOL_SIZE:  # NumPy pads, so spawn keys cannot alias entropy
        run += [0] * (_POOL_SIZE - len(run))
    assembled = run + spawn
    hash_const = _INIT_A

    def hashmix(value: int) -> int:
        nonlocal hash_const
        value ^= hash_const
        hash_const = (hash_const * _MULT_A) & _MASK32
        value = (value * hash_const) & _MASK32
        return value ^ (value >> _XSHIFT)

    def mix(x: int, y: int) -> int:
        result = (_MIX_MULT_L * x - _MIX_MULT_R * y) & _MASK32
        return result ^ (result >> _XSHIFT)

    pool = [hashmix(assembled[i] if i < len(assembled) else 0) for i in range(_POOL_SIZE)]
    for source in range(_POOL_SIZE):
        for target in range(_POOL_SIZE):
            if source != target:
                pool[target] = mix(pool[target], hashmix(pool[source]))
    for source in range(_POOL_SIZE, len(assembled)):
        for target in range(_POOL_SIZE):
            pool[target] = mix(pool[target], hashmix(assembled[source]))
    return pool


def seedsequence_seed(experiment_seed: int, *spawn_key: int) -> int:
    """NumPy ``SeedSequence(experiment_seed, spawn_key=...)``'s first word, cut to 31 bits.

    ``generate_state(1, uint32)[0]``, computed without NumPy (tests check it against
    NumPy's own over wide inputs).
    """
    word = _seedsequence_pool(experiment_seed, spawn_key)[0] ^ _INIT_B
    word = (word * ((_INIT_B * _MULT_B) & _MASK32)) & _MASK32
    return (word ^ (word >> _XSHIFT)) & MAX_SEED


def determined_seed(experiment_seed: int, trial: int) -> int:
    """The trial seed Determined's master gives the ``trial``-th trial it creates (from 1).

    The master keeps a legacy MT19937 stream (``RandomState(experiment_seed)``) and, per
    created trial, draws four 32-bit words for the request UUID and then
    ``randint(0, 2**31)``: each is exactly one 32-bit word of the stream, so the trial
    seed is word ``5 * trial - 1`` masked to 31 bits. The stream is Python's own MT19937
    (``random.Random``) put in the state ``RandomState(experiment_seed)`` starts from, so
    NumPy is not loaded (tests check it against NumPy's).
    """
    import random

    state = [experiment_seed & _MASK32]  # MT19937's init_genrand, as RandomState(int) seeds
    for index in range(1, _MT_WORDS):
        previous = state[-1]
        state.append((1812433253 * (previous ^ (previous >> 30)) + index) & _MASK32)
    stream = random.Random()
    stream.setstate((3, (*state, _MT_WORDS), None))  # position 624: the next draw twists
    words = _WORDS_PER_TRIAL * trial
    return (stream.getrandbits(32 * words) >> (32 * (words - 1))) & MAX_SEED


def cell_key(source: str) -> int:
    """A cell's identity for per-cell seeding: its source text, as every front end sends it.

    Line endings and trailing whitespace are normalised (front ends differ there); the
    key is the first 8 bytes of the SHA-256 of the UTF-8 text, little-endian.
    """
    import hashlib  # here: its OpenSSL load costs %load_ext about 2 ms

    text = source.replace("\r\n", "\n").rstrip()
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _validated(experiment_seed: object, trial: object, scheme: str,
               origin: str) -> tuple[int, int | None]:
    """(experiment seed, trial) as plain ints once every field of a lineage is valid.

    ValueError otherwise.
    """
    seed = validate_seed(experiment_seed, "experiment seed")
    validate_scheme(scheme)
    if origin not in ORIGINS:
        raise ValueError(
            f"experiment seed origin must be one of {', '.join(ORIGINS)}, got {origin!r}"
        )
    if trial is None:
        return seed, None
    trial = validate_seed(trial, "trial")
    if scheme == "determined" and not 1 <= trial <= MAX_DETERMINED_TRIAL:
        raise ValueError(
            "with scheme determined, trial counts created trials from 1 and must be "
            f"in [1, {MAX_DETERMINED_TRIAL}], got {trial}"
        )
    return seed, trial


@dataclass(frozen=True)
class Lineage:
    """Where every seed of a run came from.

    ``experiment_seed_origin`` is ``given`` (by the user), ``assigned`` (by det_nb, from
    the clock, as Determined's master does) or ``cluster`` (the trial seed a Determined
    cluster gave this trial). ``trial_seed`` is derived once, at construction; with no
    trial it is the experiment seed itself.
    """

    experiment_seed: int
    trial: int | None = None
    scheme: str = "seedsequence"
    experiment_seed_origin: str = "given"
    trial_seed: int = field(init=False)

    def __post_init__(self) -> None:
        # Stored as plain ints (np.int64 or "42" in, 42 kept): records and lines print them.
        seed, trial = _validated(self.experiment_seed, self.trial, self.scheme,
                                 self.experiment_seed_origin)
        object.__setattr__(self, "experiment_seed", seed)
        object.__setattr__(self, "trial", trial)
        object.__setattr__(self, "trial_seed", self._derive_trial_seed())

    def _derive_trial_seed(self) -> int:
        """The seed every PRNG receives."""
        if self.trial is None:
            return self.experiment_seed
        if self.scheme == "determined":
            return determined_seed(self.experiment_seed, self.trial)
        return seedsequence_seed(self.experiment_seed, self.trial)

    @property
    def trial_seed_origin(self) -> str:
        """How the trial seed was obtained, in words."""
        if self.trial is None:
            return "the experiment seed (no trial given)"
        return f"derived by scheme {self.scheme}"

    def worker_seed(self, worker: int) -> int:
        """Seed for a data-loader worker or distributed rank of this trial."""
        worker = validate_seed(worker, "worker")
        return seedsequence_seed(self.experiment_seed, self.trial or 0, worker)

    def cell_seed(self, source: str) -> int:
        """Seed for a cell under per-cell re-seeding: (trial seed, the cell's source text)."""
        return seedsequence_seed(self.trial_seed, cell_key(source))

    def command(self) -> str:
        """The ``%det_seed`` line that gives this lineage."""
        line = f"%det_seed {self.experiment_seed}"
        line += "" if self.trial is None else f" --trial {self.trial}"
        return line + ("" if self.scheme == "seedsequence" else f" --scheme {self.scheme}")

    def summary(self) -> str:
        """One line: experiment seed -> trial -> trial seed."""
        origin = self.experiment_seed_origin
        marks = "" if origin == "given" else f" ({origin})"
        trial = "none" if self.trial is None else str(self.trial)
        return (
            f"experiment seed {self.experiment_seed}{marks} -> trial {trial} "
            f"-> trial seed {self.trial_seed} [{self.scheme}]"
        )


def assign_seed(clock: Callable[[], float] = time.time) -> int:
    """An experiment seed from the Unix time, as Determined's master assigns one."""
    return int(clock()) & MAX_SEED


def make_lineage(
    seed: object = None,
    trial: object = None,
    scheme: str = "seedsequence",
    *,
    cluster_seed: int | None = None,
    clock: Callable[[], float] = time.time,
) -> Lineage:
    """Validate user input and build a Lineage (ValueError; NumPy is not loaded).

    With no seed: inside a Determined trial (``cluster_seed``) adopt its trial seed, so the
    notebook seeds as on the cluster; elsewhere assign an experiment seed from the clock.
    """
    validate_scheme(scheme)
    trial_number = None if trial is None else validate_seed(trial, "trial")
    if seed is None and cluster_seed is not None:
        if trial_number is not None:
            raise ValueError(
                "on a Determined cluster the trial seed comes from the cluster; give an "
                "experiment seed to derive trials yourself"
            )
        return Lineage(cluster_seed, None, scheme, "cluster")
    if seed is None:
        return Lineage(assign_seed(clock), trial_number, scheme, "assigned")
    return Lineage(validate_seed(seed, "experiment seed"), trial_number, scheme, "given")
