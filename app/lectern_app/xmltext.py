"""Text that XML 1.0 and HTML can carry.

XML 1.0 forbids C0 controls other than tab, LF and CR, lone surrogates and U+FFFE/U+FFFF:
one of them anywhere makes a whole OPDS feed unparseable. HTML calls those, C1 controls
and the other noncharacters parse errors. Calibre stores whatever it was given (a
pasted title, an imported OPF), and requests echo what they were sent, so every XML and
HTML body is passed through `clean` as a whole once it is rendered: markup is never
made of these characters, so stripping them from the finished document only ever
removes them from text and attribute values.
"""

from __future__ import annotations

import re

# U+nFFFE and U+nFFFF of the 16 supplementary planes
_PLANE_ENDS = "".join(
    rf"\U{p + 0xFFFE:08X}\U{p + 0xFFFF:08X}" for p in range(0x10000, 0x110000, 0x10000)
)
_UNSAFE = r"\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff" + _PLANE_ENDS
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f" + _UNSAFE + "]")
_FILENAME_FORBIDDEN = re.compile(r"[\x00-\x1f" + _UNSAFE + "]")


def clean(text: str) -> str:
    """`text` without the characters XML 1.0 forbids or HTML calls parse errors."""
    return _FORBIDDEN.sub("", text)


def clean_filename(name: str) -> str:
    """A download name for Content-Disposition: also without tab, LF and CR."""
    return _FILENAME_FORBIDDEN.sub("", name)
