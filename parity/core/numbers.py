"""Numbers spelled in text that Parity reads back: versions on the command line, version folders on disk."""

from __future__ import annotations

import re

#: ASCII decimal digits only: ``str.isdigit()`` also accepts '²', '٣' or '①', which ``int()`` then refuses
#: (or reads as another number), so a folder or an argument spelled with them is not a version.
_DECIMAL = re.compile(r"[0-9]+")


def decimal_int(text: str) -> int | None:
    """The integer ``text`` spells in ASCII decimal digits, or None when it is anything else.

    Parameters
    ----------
    text : str
        E.g. a version folder's name or the part after ``:`` in ``NAME:VERSION``.

    Returns
    -------
    int or None
        None for an empty string, signs, spaces, decimals and every non-ASCII digit ('²', '٣').
    """
    return int(text) if _DECIMAL.fullmatch(text) else None
