"""The entry points the audit watches: one function per family, each patching its module.

Every family is patched once its module is imported (never importing it): what draws
from the operating system's entropy, and what takes a seed that a clock may have given.
C methods of extension types and NumPy's Cython classes cannot be patched: a cell's calls
of them are watched through :mod:`.cell_calls` (``torch.Generator().seed()``,
``np.random.PCG64(int(time.time()))``), and torch's global generators by their seeds.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

from det_nb.entropy_audit.audit import CLOCK, Call, EntropyAudit, Entry, Judge
from det_nb.entropy_audit.cell_calls import SEEDING_METHODS
from det_nb.entropy_audit.user_code import UNKNOWN, callee_name, resolve, seed_argument
from det_nb.sources import keras as keras_source

_UNSEEN = object()
_NO_NAMES = frozenset()

_CLOCK_FIX = ("seed from det_nb, not the clock: det_nb.lineage().trial_seed, or "
              "det_nb.worker_seed(k) for a stream of its own")
_SECRETS_FIX = ("draw from a seeded generator, random.Random(det_nb.worker_seed(k)) (keep "
                "OS entropy for real secrets, out of results)")
_NUMPY_FIX = ("use det_nb.rng(), or np.random.default_rng(det_nb.worker_seed(k)) for a stream "
              "of its own")


def draws(audit: EntropyAudit, judge: Judge,
          skip: frozenset[str] = _NO_NAMES) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A maker of wrappers that, after each call, record it when ``judge`` finds it drew."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            audit.judge(judge, skip, args, kwargs)
            return result

        return wrapper

    return make


def seeds(audit: EntropyAudit, entry: Entry, *,
          one_argument: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A maker of wrappers for seeding functions (their seed is the first argument or
    ``seed=``): record a seed read from a clock. ``default_rng(seed)`` runs in tight loops:
    the fast path is one frame and one or two dict look-ups (a line without a call that may
    be a clock inside a call's arguments cannot seed from one), and ``one_argument`` wraps a
    function of the seed alone without packing arguments (``default_rng(seed=None)``), for
    about 0.2 µs a call."""
    user, getframe = audit.user, sys._getframe
    clock_calls = user.clock_calls

    def note(frame: FrameType, calls: object) -> None:
        """For a line of the notebook's code with clock calls, or a file not seen before."""
        filename = frame.f_code.co_filename
        place = user.place(filename) if calls is _UNSEEN else user.places[filename]
        if place is not None and user.clock_seed(frame, place, "seed"):
            audit.record(frame, place, entry)

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        # The seed is checked after the call: a seed it refuses is no seed taken.
        if one_argument:
            def wrapper(seed: Any = None) -> Any:
                result = original(seed)
                frame = getframe(1)
                calls = clock_calls.get(frame.f_code.co_filename, _UNSEEN)
                if calls and (calls is _UNSEEN or frame.f_lineno in calls):
                    note(frame, calls)
                return result
        else:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                result = original(*args, **kwargs)
                frame = getframe(1)
                calls = clock_calls.get(frame.f_code.co_filename, _UNSEEN)
                if calls and (calls is _UNSEEN or frame.f_lineno in calls):
                    note(frame, calls)
                return result

        return wrapper

    return make


# -- Python: random, os, secrets, uuid --------------------------------------------------

_RANDOM = Entry("random.Random() without a seed", "use random.Random(det_nb.worker_seed(k))")
_SYSTEM_RANDOM = Entry("random.SystemRandom()", _SECRETS_FIX)
_RANDOM_SEED = Entry("random.seed() without a seed",
                     "remove it (%det_seed seeds random), or random.seed(det_nb.worker_seed(k))")
_RANDOM_CLOCK = Entry("random seed", _CLOCK_FIX, CLOCK)


def _seed_value(args: tuple, kwargs: dict, position: int, name: str) -> object:
    """The seed a wrapped call was given (at ``position``, or as ``name``), else None."""
    return args[position] if len(args) > position else kwargs.get(name)


def _random(audit: EntropyAudit, random: ModuleType) -> None:
    """``random.Random()`` and ``SystemRandom()``, ``random.seed()``, and clock seeds to them."""
    def seeded(call: Call, seed: object) -> Entry | None:  # seed(a=None, version=2)
        if seed is None:
            return _RANDOM_SEED
        return _RANDOM_CLOCK if call.clock_seed("a") else None

    def init(call: Call) -> Entry | None:  # Random.__init__(self, x=None)
        if isinstance(call.args[0], random.SystemRandom):
            return _SYSTEM_RANDOM
        seed = _seed_value(call.args, call.kwargs, 1, "x")
        if seed is None:
            # Unpickling (C code) makes a Random() and then restores its state.
            return None if callee_name(call.site) in ("load", "loads") else _RANDOM
        return _RANDOM_CLOCK if call.clock_seed("x") else None

    def global_seed(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:  # random.seed(a=None, version=2)
            result = original(*args, **kwargs)
            # Keras's default seeds come from this stream: repeatable once seeded.
            audit.random_seeded = _seed_value(args, kwargs, 0, "a") is not None
            audit.judge(lambda call: seeded(call, _seed_value(args, kwargs, 0, "a")),
                        _NO_NAMES, args, kwargs)
            return result

        return wrapper

    audit.patch(random.Random, "__init__", draws(audit, init))
    audit.patch(random.Random, "seed", draws(
        audit, lambda call: seeded(call, _seed_value(call.args, call.kwargs, 1, "a"))))
    audit.patch(random, "seed", global_seed)


def _os(audit: EntropyAudit, os: ModuleType) -> None:
    """``os.urandom()`` and ``os.getrandom()`` called by the notebook itself."""
    for name in ("urandom", "getrandom"):
        audit.patch(os, name, draws(audit, Entry(f"os.{name}()", _SECRETS_FIX)))


def _secrets(audit: EntropyAudit, secrets: ModuleType) -> None:
    """Every drawing function of ``secrets``."""
    for name in ("token_bytes", "token_hex", "token_urlsafe", "randbits", "choice", "randbelow"):
        audit.patch(secrets, name, draws(audit, Entry(f"secrets.{name}()", _SECRETS_FIX)))


def _uuid(audit: EntropyAudit, uuid: ModuleType) -> None:
    """``uuid.uuid4()``: 122 bits from ``os.urandom``."""
    audit.patch(uuid, "uuid4", draws(audit, Entry(
        "uuid.uuid4()",
        "use uuid.UUID(int=random.getrandbits(128), version=4) (det_nb seeds random)")))


# -- NumPy ------------------------------------------------------------------------------

_NUMPY = Entry("NumPy SeedSequence without a seed", _NUMPY_FIX)
_NUMPY_SEED = Entry("np.random.seed() without a seed",
                    "remove it (%det_seed seeds NumPy's global state), or pass a seed: "
                    "det_nb.worker_seed(k)")


def _numpy(audit: EntropyAudit, numpy_random: ModuleType) -> None:
    """Every generator, bit generator and SeedSequence made without a seed, and
    ``np.random.seed()``: NumPy takes their entropy from ``bit_generator.randbits``
    (``secrets.randbits``), which it calls from Cython, so the calling frame is the user's.
    Clock seeds through ``np.random.seed``, ``default_rng`` and ``RandomState``.
    """
    random_state = getattr(numpy_random, "RandomState", None)

    def judge(call: Call) -> Entry | None:
        node = call.site.node
        name = callee_name(call.site)
        callee = UNKNOWN if node is None else resolve(node.func, call.frame)
        if name == "jumped" or getattr(callee, "__name__", None) == "jumped":
            return None  # a copy of a seeded state, made through an unseeded one
        if node is not None and (name == "RandomState" or callee is random_state):
            # RandomState(seed) makes an unseeded MT19937, then seeds it the legacy way.
            seed = seed_argument(node, "seed")
            if seed is not None and not _is_none(seed, call.frame):
                return Entry("np.random.RandomState seed", _CLOCK_FIX, CLOCK) if (
                    call.clock_seed("seed")) else None
        return _NUMPY_SEED if name == "seed" else _NUMPY

    bit_generator = sys.modules.get("numpy.random.bit_generator")
    audit.patch(bit_generator, "randbits", draws(audit, judge))
    audit.call_watches.append(_numpy_classes(audit, bit_generator))
    audit.patch(numpy_random, "seed", seeds(audit, Entry("np.random.seed", _CLOCK_FIX, CLOCK),
                                            one_argument=True))
    audit.patch(numpy_random, "default_rng", seeds(audit, Entry(
        "np.random.default_rng", _NUMPY_FIX, CLOCK), one_argument=True))


def _numpy_classes(audit: EntropyAudit,
                   bit_generator: ModuleType | None) -> Callable[[Any], Callable[..., Any] | None]:
    """The watch of a cell's calls of ``SeedSequence`` and the bit generators (``PCG64``,
    ``MT19937``, ``Philox``, ``SFC64`` and subclasses), Cython classes that take a seed
    without calling anything patchable: a seed (``entropy``) read from a clock is recorded."""
    seed_sequence = getattr(bit_generator, "SeedSequence", None)
    bit_generator_class = getattr(bit_generator, "BitGenerator", None)

    def watch(callee: Any) -> Callable[..., Any] | None:
        if not isinstance(callee, type) or seed_sequence is None:
            return None
        if issubclass(callee, seed_sequence):
            keyword = "entropy"
        elif bit_generator_class is not None and issubclass(callee, bit_generator_class):
            keyword = "seed"
        else:
            return None
        entry = Entry(f"np.random.{callee.__name__}", _NUMPY_FIX, CLOCK)
        return draws(audit, lambda call: entry if call.clock_seed(keyword) else None)(callee)

    return watch


def _is_none(node: ast.expr, frame: FrameType) -> bool:
    """Whether an argument is ``None``, as written or as the name's value now."""
    if isinstance(node, ast.Constant):
        return node.value is None
    return resolve(node, frame) is None


# -- PyTorch ----------------------------------------------------------------------------

_TORCH_SEED = Entry("torch.seed()", "remove it (%det_seed seeds torch), or "
                    "torch.manual_seed(det_nb.worker_seed(k))")
_CUDA_SEED = Entry("torch.cuda.seed()", "remove it (%det_seed seeds every CUDA device), or "
                   "torch.cuda.manual_seed_all(det_nb.worker_seed(k))")


_GENERATOR_SEED = Entry("torch.Generator.seed()", "use .manual_seed(det_nb.worker_seed(k)) on "
                        "the generator (%det_seed seeds torch's global one)")
_GENERATOR_CLOCK = Entry("torch.Generator.manual_seed", _CLOCK_FIX, CLOCK)
_RESEEDED_FIX = ("remove the call (%det_seed seeds torch), or seed it with "
                 "torch.manual_seed(det_nb.worker_seed(k)), which the audit sees")
_CPU_RESEEDED = Entry(
    "torch's global generator was re-seeded from OS entropy after %det_seed (torch.seed() or "
    "torch.default_generator.seed())", _RESEEDED_FIX)
_CUDA_RESEEDED = Entry(
    "torch's CUDA generator was re-seeded from OS entropy after %det_seed (torch.cuda.seed() "
    "or a CUDA generator's .seed())", _RESEEDED_FIX)
#: torch's seed of its CUDA generators before any seeding (c10's default_rng_seed_val).
_TORCH_DEFAULT_CUDA_SEED = 67280421310721


class _TorchGlobalSeeds:
    """Whether torch's global generators hold a seed someone gave them.

    Known seeds: those the generators held when the audit started, and every seed set
    since through a call the audit wraps (``torch.manual_seed``, which det_nb's seeding and
    re-seeding use too, ``torch.cuda.manual_seed(_all)``, ``torch.set_rng_state``) or a
    cell's ``.manual_seed(...)`` / ``.seed()`` on a generator (:mod:`.cell_calls`). Any
    other seed was drawn from OS entropy by a C method the audit cannot patch
    (``torch.default_generator.seed()``, ``torch.seed()`` called by a library): a record
    without a line. Checked before each seeding call and whenever records are read. CUDA
    is looked at only once it has started (never starting it), on the current device.
    """

    def __init__(self, audit: EntropyAudit, torch: ModuleType) -> None:
        self.audit, self.torch = audit, torch
        self.known = {_TORCH_DEFAULT_CUDA_SEED}
        self.flagged: set[tuple[str, int]] = set()
        #: a CUDA state set before CUDA started: its seed is unknown until then
        self.cuda_state_pending = False
        #: how many calls that set the seeds are running (nested: torch.seed() seeds CUDA)
        self.setting_now = 0
        self.remember()

    def _seeds(self) -> list[tuple[str, int]]:
        seeds = [("cpu", self.torch.initial_seed())]
        cuda = sys.modules.get("torch.cuda")
        if cuda is not None and cuda.is_initialized():
            seeds.append(("cuda", cuda.initial_seed()))
        return seeds

    def check(self) -> None:
        """Record each seed held now that nobody gave (once per seed); not while a call
        that sets them runs (``torch.seed()`` calls ``torch.cuda.manual_seed_all``)."""
        if self.setting_now:
            return
        for device, seed in self._seeds():
            if device == "cuda" and self.cuda_state_pending:
                self.cuda_state_pending = False
                self.known.add(seed)  # the state set before CUDA started
            if seed in self.known or (device, seed) in self.flagged:
                continue
            self.flagged.add((device, seed))
            subject = "torch's global generator" if device == "cpu" else "torch's CUDA generator"
            self.audit.record_effect(subject, _CPU_RESEEDED if device == "cpu" else _CUDA_RESEEDED)

    def remember(self) -> None:
        """The seeds held now were given by a watched call."""
        self.known.update(seed for _, seed in self._seeds())

    def setting(self, cuda_seed: bool = False,
                cuda_state: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A maker of wrappers for calls that set the generators' seeds: check before,
        remember after. ``cuda_seed``: the call's first argument (or ``seed=``) is a seed
        for CUDA, which may start later; ``cuda_state``: it sets a CUDA state."""
        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                self.check()
                self.setting_now += 1
                try:
                    result = original(*args, **kwargs)
                finally:
                    self.setting_now -= 1
                if cuda_seed:  # torch maps the seed (negative ones) as the CPU generator does
                    seed = _seed_value(args, kwargs, 0, "seed")
                    self.known.add(self.torch.Generator().manual_seed(int(seed)).initial_seed())
                self.remember()
                if cuda_state and len(self._seeds()) == 1:  # CUDA sets it when it starts
                    self.cuda_state_pending = True
                return result

            return wrapper

        return make

    def watch(self, callee: Any) -> Callable[..., Any] | None:
        """The watch of a cell's ``.seed()`` / ``.manual_seed(...)`` on any torch generator
        (C methods): an OS seed, or a seed read from a clock, is recorded at its line."""
        owner = getattr(callee, "__self__", None)
        name = getattr(callee, "__name__", None)
        if name not in SEEDING_METHODS or not isinstance(owner, self.torch.Generator):
            return None
        if name == "seed":
            judge: Judge = _TORCH_SEED if owner is self.torch.default_generator else _GENERATOR_SEED
        else:
            judge = lambda call: _GENERATOR_CLOCK if call.clock_seed("seed") else None  # noqa: E731
        return draws(audit=self.audit, judge=judge)(self.setting()(callee))


def _torch(audit: EntropyAudit, torch: ModuleType) -> None:
    """``torch.seed()``, ``torch.cuda.seed()`` / ``seed_all()``, clock seeds to
    ``manual_seed``, a cell's ``.seed()`` and ``.manual_seed(clock)`` on a generator, and
    seeds of the global generators that nobody gave (:class:`_TorchGlobalSeeds`)."""
    global_seeds = _TorchGlobalSeeds(audit, torch)
    audit.effect_checks.append(global_seeds.check)
    audit.call_watches.append(global_seeds.watch)
    setting = global_seeds.setting()
    for owner in (torch, getattr(torch, "random", None)):
        audit.patch(owner, "seed", lambda original: draws(audit, _TORCH_SEED)(setting(original)))
        audit.patch(owner, "manual_seed", lambda original: seeds(audit, Entry(
            "torch.manual_seed", _CLOCK_FIX, CLOCK))(setting(original)))
        audit.patch(owner, "set_rng_state", setting)
    cuda_seeding = global_seeds.setting(cuda_seed=True)
    for owner in (getattr(torch, "cuda", None), sys.modules.get("torch.cuda.random")):
        for name in ("seed", "seed_all"):
            audit.patch(owner, name, lambda original: draws(audit, _CUDA_SEED)(setting(original)))
        for name in ("manual_seed", "manual_seed_all"):
            audit.patch(owner, name, lambda original, name=name: seeds(audit, Entry(
                f"torch.cuda.{name}", _CLOCK_FIX, CLOCK))(cuda_seeding(original)))
        for name in ("set_rng_state", "set_rng_state_all"):
            audit.patch(owner, name, global_seeds.setting(cuda_state=True))


# -- TensorFlow, Keras, JAX -------------------------------------------------------------

_TF_FIX = ("use tf.random.Generator.from_seed(det_nb.worker_seed(k)), or "
           "tf.random.get_global_generator() (det_nb seeds it)")


def _tensorflow(audit: EntropyAudit, tf: ModuleType) -> None:
    """``tf.random.Generator.from_non_deterministic_state()``, and clock seeds to
    ``Generator.from_seed`` and ``tf.random.set_seed``."""
    generator = getattr(sys.modules.get("tensorflow.python.ops.stateful_random_ops"),
                        "Generator", None)
    audit.patch(generator, "from_non_deterministic_state", draws(audit, Entry(
        "tf.random.Generator.from_non_deterministic_state()", _TF_FIX)))
    audit.patch(generator, "from_seed", seeds(audit, Entry(
        "tf.random.Generator.from_seed", _TF_FIX, CLOCK)))
    audit.patch(getattr(tf, "random", None), "set_seed", seeds(audit, Entry(
        "tf.random.set_seed", _CLOCK_FIX, CLOCK)))


def _keras(audit: EntropyAudit, keras: ModuleType) -> None:
    """``keras.random.SeedGenerator()`` without a seed while Python's ``random`` is
    unseeded (Keras takes the default seed from it: repeatable once seeded), and clock
    seeds to ``keras.utils.set_random_seed``."""
    seed_generator = sys.modules.get("keras.src.random.seed_generator")
    # The caller of SeedGenerator.__init__ (which det_nb's Keras source may wrap).
    skip = frozenset(filter(None, (getattr(seed_generator, "__file__", None),
                                   keras_source.__file__)))
    unseeded = Entry(
        "keras.random.SeedGenerator() before Python's random was seeded",
        "build it after %det_seed, or keras.random.SeedGenerator(det_nb.worker_seed(k))")
    audit.patch(seed_generator, "make_default_seed", draws(
        audit, lambda call: None if audit.random_seeded else unseeded, skip))
    audit.patch(getattr(keras, "utils", None), "set_random_seed", seeds(audit, Entry(
        "keras.utils.set_random_seed", _CLOCK_FIX, CLOCK)))


def _jax(audit: EntropyAudit, jax: ModuleType) -> None:
    """Clock seeds to ``jax.random.key`` and ``PRNGKey`` (JAX draws no entropy itself)."""
    for name in ("key", "PRNGKey"):
        audit.patch(getattr(jax, "random", None), name, seeds(audit, Entry(
            f"jax.random.{name}",
            "use det_nb.jax_key(), or jax.random.key(det_nb.worker_seed(k))",
            CLOCK)))


#: Module whose import makes a family watchable -> the function that patches it.
FAMILIES: dict[str, Callable[[EntropyAudit, ModuleType], None]] = {
    "random": _random, "os": _os, "secrets": _secrets, "uuid": _uuid,
    "numpy.random": _numpy, "torch": _torch, "tensorflow": _tensorflow, "keras": _keras,
    "jax": _jax,
}
