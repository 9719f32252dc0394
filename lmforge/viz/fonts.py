"""Fonts for Chinese (CJK) text in matplotlib pictures.

matplotlib's default font, DejaVu Sans, has no CJK glyphs: ``中`` would be drawn as an
empty box (with a "Glyph missing" warning). :func:`find_cjk_font` looks for an
installed font that has them:

1. the file named by ``$LMFORGE_CJK_FONT``, if set;
2. Noto Sans CJK from the ``noto-cjk-sans-jp-regular`` package, a dependency of lmforge
   (the full CJK glyph set, Simplified Chinese included, so pictures render on any
   machine with no system font installed);
3. fonts matplotlib knows, by family name: Noto Sans/Serif CJK, Source Han, WenQuanYi,
   Droid Sans Fallback, AR PL, SimHei, Microsoft YaHei, PingFang, ...;
4. any other font matplotlib knows, then any font file in the system font folders,
   whose character map covers ``中`` (checked with ``matplotlib.ft2font``).

:func:`readable_labels` uses that font (with DejaVu Sans as the fallback for the
characters it lacks, through matplotlib's per-glyph font fallback). When no font has
CJK glyphs, every character no available font can draw is written as its code point
(``中`` -> ``U+4E2D``) and a warning says how to install one
(``apt-get install fonts-noto-cjk`` or ``fonts-wqy-zenhei`` on Debian/Ubuntu).
"""

from __future__ import annotations

import functools
import os
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CJK_FAMILIES", "LabelFont", "font_covers", "find_cjk_font", "default_font",
           "readable_labels", "codepoint_label"]

#: Family names tried first, most complete Simplified-Chinese coverage first.
CJK_FAMILIES: tuple[str, ...] = (
    "Noto Sans CJK SC", "Noto Sans CJK", "Noto Serif CJK", "Noto Sans SC", "Source Han Sans",
    "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "AR PL UMing",
    "AR PL UKai", "AR PL", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC",
    "Hiragino Sans GB", "Arial Unicode MS")
_PROBE = "中文字"
_INSTALL_HINT = ("install a CJK font (Debian/Ubuntu: `apt-get install fonts-noto-cjk` or "
                 "`fonts-wqy-zenhei`) or point $LMFORGE_CJK_FONT at a .ttf/.otf/.ttc file")


@functools.lru_cache(maxsize=256)
def _charmap(path: str) -> frozenset[int]:
    """Code points the font file at ``path`` maps (first face of a collection)."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (RuntimeError, OSError, ValueError):
        return frozenset()


def font_covers(path: str | Path, text: str) -> bool:
    """True when the font file has a glyph for every character of ``text``.

    "Last Resort" fonts (matplotlib ships one) map every code point to a box showing
    its block; they never count as covering anything.
    """
    if "lastresort" in Path(path).name.lower().replace(" ", "").replace("-", ""):
        return False
    cmap = _charmap(str(path))
    return all(ord(ch) in cmap for ch in text)


@functools.lru_cache(maxsize=1)
def default_font() -> Path:
    """The file of matplotlib's default sans-serif font (DejaVu Sans)."""
    from matplotlib import font_manager

    return Path(font_manager.findfont(font_manager.FontProperties()))


def _search(env: str | None) -> Path | None:
    from matplotlib import font_manager

    if env:
        p = Path(env).expanduser()
        if p.is_file() and font_covers(p, _PROBE):
            return p
        warnings.warn(f"$LMFORGE_CJK_FONT={env} is not a font file with CJK glyphs; "
                      "searching the installed fonts", stacklevel=3)
    packaged = _packaged_font()
    if packaged is not None:
        return packaged
    entries = list(font_manager.fontManager.ttflist)
    for family in CJK_FAMILIES:
        for e in entries:
            if family.lower() in e.name.lower() and font_covers(e.fname, _PROBE):
                return Path(e.fname)
    known = {e.fname for e in entries}
    for fname in sorted(known):
        if font_covers(fname, _PROBE):
            return Path(fname)
    # Fonts installed after matplotlib built its font cache are not in ttflist.
    for fname in sorted(set(font_manager.findSystemFonts()) - known):
        if font_covers(fname, _PROBE):
            return Path(fname)
    return None


def _packaged_font() -> Path | None:
    """Noto Sans CJK shipped by the ``noto-cjk-sans-jp-regular`` wheel, when installed."""
    try:
        import noto_cjk_sans_jp_regular as noto
    except ImportError:
        return None
    path = Path(str(noto.FONT_PATH))
    return path if path.is_file() and font_covers(path, _PROBE) else None


def find_cjk_font() -> Path | None:
    """The file of an installed font with CJK glyphs, or None (searched once per
    value of ``$LMFORGE_CJK_FONT``)."""
    return _find_cached(os.environ.get("LMFORGE_CJK_FONT") or None)


@functools.lru_cache(maxsize=4)
def _find_cached(env: str | None) -> Path | None:
    return _search(env)


def codepoint_label(ch: str) -> str:
    """``中`` -> ``U+4E2D``: a readable stand-in for a character no font can draw."""
    return f"U+{ord(ch):04X}"


@dataclass
class LabelFont:
    """Labels ready to draw, and the font to draw them with.

    ``family`` is a list of font family names for matplotlib (its per-glyph fallback
    goes down the list), or None for matplotlib's default. ``fallback`` is True when
    some characters had to be replaced by ``U+XXXX`` codes.
    """

    labels: list[str]
    family: list[str] | None = None
    font_files: list[Path] = field(default_factory=list)
    fallback: bool = False

    def fontproperties(self):
        """A ``matplotlib.font_manager.FontProperties`` for the labels, or None."""
        from matplotlib.font_manager import FontProperties

        return FontProperties(family=self.family) if self.family else None


def _register(path: Path) -> str:
    """Make the font at ``path`` known to matplotlib; return its family name."""
    from matplotlib import font_manager

    if all(Path(e.fname) != path for e in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def readable_labels(labels: Sequence[str], cjk_font: Path | None | str = "auto") -> LabelFont:
    """Make ``labels`` drawable: pick a CJK font when a label needs one, else replace
    every character no available font has by its ``U+XXXX`` code (warning once).

    ``cjk_font``: ``"auto"`` searches (:func:`find_cjk_font`), None forces the fallback,
    a path uses that font file.
    """
    labels = list(labels)
    base = default_font()
    needed = {ch for label in labels for ch in label}
    if all(font_covers(base, ch) for ch in needed):
        return LabelFont(labels, None, [base], False)
    font = find_cjk_font() if isinstance(cjk_font, str) and cjk_font == "auto" else cjk_font
    files = [base]
    family = None
    if font is not None:
        font = Path(font)
        files = [font, base]
        family = [_register(font), _register(base)]

    def ok(ch: str) -> bool:
        return any(font_covers(f, ch) for f in files)

    missing = {ch for ch in needed if not ok(ch)}
    if not missing:
        return LabelFont(labels, family, files, False)
    out = ["".join(codepoint_label(ch) if ch in missing else ch for ch in label)
           for label in labels]
    if font is None and any(unicodedata.east_asian_width(ch) in "WF" for ch in missing):
        _warn_once("no installed font has CJK glyphs, so Chinese characters in labels are "
                   "shown as code points (中 -> U+4E2D); " + _INSTALL_HINT)
    else:
        _warn_once(f"no available font has glyphs for {''.join(sorted(missing))[:8]!r}; "
                   "they are shown as U+XXXX codes")
    return LabelFont(out, family, files, True)


@functools.lru_cache(maxsize=64)
def _warn_once(message: str) -> None:
    """Warn with ``message`` the first time only (per process)."""
    warnings.warn(message, stacklevel=4)
