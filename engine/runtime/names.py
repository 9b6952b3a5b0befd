"""Container names: the random ``adjective_scientist`` ones and the rule every name must follow.

Docker gives each container a name as well as an id, so people can type ``stop web`` instead of a
hex prefix. A name the user does not choose is drawn at random from two word lists
(``eager_curie``); when that name is taken a digit is appended, as Docker does after a collision.

A valid name starts with a letter or digit and continues with letters, digits, ``_``, ``.`` or
``-`` (``[a-zA-Z0-9][a-zA-Z0-9_.-]+``); Docker shows names with a leading ``/`` (``/web`` in
``inspect``), which is accepted and dropped here.
"""

from __future__ import annotations

import os
import re

from portside.engine.errors import InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Callable

    import random


NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

ADJECTIVES = [
    "admiring", "adoring", "agitated", "amazing", "angry", "awesome", "blissful", "bold", "brave",
    "charming", "clever", "cool", "compassionate", "competent", "confident", "crazy", "dazzling",
    "determined", "distracted", "dreamy", "eager", "ecstatic", "elastic", "elegant", "epic",
    "exciting", "fervent", "festive", "flamboyant", "focused", "friendly", "frosty", "funny",
    "gallant", "gifted", "goofy", "gracious", "great", "happy", "hardcore", "heuristic",
    "hopeful", "hungry", "infallible", "inspiring", "intelligent", "jolly", "jovial", "keen",
    "kind", "laughing", "loving", "lucid", "magical", "modest", "musing", "mystifying", "naughty",
    "nervous", "nice", "nifty", "nostalgic", "objective", "optimistic", "peaceful", "pedantic",
    "pensive", "practical", "priceless", "quirky", "quizzical", "relaxed", "reverent", "romantic",
    "sad", "serene", "sharp", "silly", "sleepy", "stoic", "strange", "stupefied", "suspicious",
    "sweet", "tender", "thirsty", "trusting", "upbeat", "vibrant", "vigilant", "vigorous",
    "wizardly", "wonderful", "xenodochial", "youthful", "zealous", "zen",
]

SCIENTISTS = [
    "agnesi", "albattani", "allen", "archimedes", "ardinghelli", "aryabhata", "babbage", "banach",
    "bardeen", "bartik", "bell", "bhabha", "blackwell", "bohr", "booth", "borg", "bose", "brahmagupta",
    "brattain", "brown", "carson", "cerf", "chandrasekhar", "clarke", "curie", "darwin", "davinci",
    "dijkstra", "einstein", "elion", "engelbart", "euclid", "euler", "faraday", "fermat", "fermi",
    "feynman", "franklin", "galileo", "gauss", "goldberg", "goodall", "hamilton", "hawking",
    "heisenberg", "hermann", "hodgkin", "hopper", "hypatia", "jackson", "jennings", "johnson",
    "kalam", "kepler", "khorana", "knuth", "kowalevski", "lalande", "lamarr", "leakey", "lovelace",
    "lumiere", "mayer", "mccarthy", "mcclintock", "meitner", "mendel", "mirzakhani", "morse",
    "napier", "newton", "nobel", "noether", "pascal", "pasteur", "perlman", "pike", "poincare",
    "ramanujan", "ritchie", "rosalind", "sammet", "shannon", "shockley", "sinoussi", "tesla",
    "thompson", "torvalds", "turing", "volhard", "wescoff", "wiles", "williams", "wozniak", "wright",
    "yalow", "yonath",
]


def validate_name(name: str) -> str:
    """Check a user-given container name and return it without a leading ``/``.

    Raises:
        InvalidArgument: the name has characters Docker does not allow.
    """
    bare = name[1:] if name.startswith("/") else name
    if not NAME_RE.match(bare):
        raise InvalidArgument(f'invalid container name "{name}", only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                              f"are allowed")
    return bare


class _SystemRandom:
    """``choice`` and ``randint`` drawn from ``os.urandom`` (the random module costs ms to
    import, on the path of every ``run``)."""

    @staticmethod
    def _below(n: int) -> int:
        return int.from_bytes(os.urandom(8), "big") % n

    def choice(self, seq):
        return seq[self._below(len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + self._below(b - a + 1)


def random_name(taken: Callable[[str], bool] = lambda _n: False,
                rng: random.Random | None = None) -> str:
    """A free ``adjective_scientist`` name.

    Args:
        taken: tells whether a name is already used.
        rng: the random source (tests pass a seeded one).
    Returns:
        a name for which ``taken`` returned False.
    """
    source: random.Random | _SystemRandom = rng or _SystemRandom()
    for attempt in range(100):
        name = f"{source.choice(ADJECTIVES)}_{source.choice(SCIENTISTS)}"
        if name == "boring_wozniak":  # Steve Wozniak is not boring (Docker's own rule)
            continue
        if attempt >= 10:
            name += str(source.randint(0, 99))
        if not taken(name):
            return name
    raise InvalidArgument("could not find a free container name")
