"""HTML helpers shared by the site profiles: visible text of a node, emphasis and
alignment tests, lazy-load image addresses, and flattening an article body element
into :class:`Block` s in document order.

All functions take lxml elements (``parsel.Selector(...).root`` and its descendants) and
never raise on odd markup (comments, processing instructions, unknown tags).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from crawler.text import normalize_text

__all__ = [
    "Block",
    "node_text",
    "clean_text",
    "wholly",
    "is_bold",
    "is_italic",
    "alignment",
    "has_class",
    "image_src",
    "flatten_blocks",
]

#: Elements whose content is never visible text.
SKIP_TAGS = frozenset(
    {"script", "style", "noscript", "template", "iframe", "object", "embed", "video",
     "audio", "button", "select", "option", "textarea", "input", "svg", "map"}
)
#: Elements that start a new line when rendered; their text is separated by a space.
BLOCK_TAGS = frozenset(
    {"p", "div", "li", "td", "th", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
     "figure", "figcaption", "section", "article", "table", "tbody", "thead", "tfoot",
     "ul", "ol", "dl", "dt", "dd", "pre", "address", "header", "footer", "center", "main",
     "aside", "nav", "caption", "hr"}
)
#: Block containers that may hold paragraphs (recursed into when they do).
CONTAINER_TAGS = frozenset({"div", "section", "article", "blockquote", "center", "main", "span"})
EMBED_TAGS = frozenset({"iframe", "video", "audio", "object", "embed"})
_BLOCK_OR_EMBED = BLOCK_TAGS | EMBED_TAGS
_HEADING_OR_PARA = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "address", "dd", "dt"})

_ALIGN_RE = re.compile(r"text-align\s*:\s*(left|right|center|justify)", re.IGNORECASE)
_BOLD_STYLE_RE = re.compile(r"font-weight\s*:\s*(bold|[6-9]00)", re.IGNORECASE)
_ITALIC_STYLE_RE = re.compile(r"font-style\s*:\s*italic", re.IGNORECASE)


def _tag(el: Any) -> str | None:
    """Lower-case tag name, or None for comments/processing instructions."""
    tag = el.tag
    return tag.lower() if isinstance(tag, str) else None


def node_text(el: Any) -> str:
    """Raw visible text of an lxml element (its tail excluded), not yet normalised.

    ``<br>`` and block-level children become spaces so ``a<br>b`` does not read ``ab``;
    script/style/iframe content and comments are skipped. Link text is kept.
    """
    parts: list[str] = []
    _collect_text(el, parts, None)
    return "".join(parts)


def _collect_text(el: Any, parts: list[str], keep: Callable[[Any], bool] | None,
                  inside: bool = False) -> None:
    tag = _tag(el)
    if tag is None or tag in SKIP_TAGS:
        return
    if tag == "br":
        parts.append(" ")
        return
    now_inside = inside or (keep is not None and keep(el))
    # With a ``keep`` predicate only text *outside* matching elements is collected.
    emit = keep is None or not now_inside
    block = tag in BLOCK_TAGS
    if block:
        parts.append(" ")
    if el.text and emit:
        parts.append(el.text)
    for child in el:
        _collect_text(child, parts, keep, now_inside)
        if child.tail and emit:
            parts.append(child.tail)
    if block:
        parts.append(" ")


def clean_text(el: Any) -> str:
    """Normalised visible text of an element (``normalize_text`` without re-decoding
    entities: the HTML parser already decoded them)."""
    return normalize_text(node_text(el), decode_entities=False)


def wholly(el: Any, pred: Callable[[Any], bool]) -> bool:
    """True if ``el`` has visible text and all of it sits inside elements matching ``pred``
    (e.g. a paragraph that is entirely ``<strong>``)."""
    if not clean_text(el):
        return False
    if pred(el):
        return True
    outside: list[str] = []
    _collect_text(el, outside, pred)
    return not normalize_text("".join(outside), decode_entities=False)


def is_bold(el: Any) -> bool:
    """``<b>``/``<strong>`` or an inline ``font-weight: bold|600+``."""
    return _tag(el) in ("b", "strong") or bool(_BOLD_STYLE_RE.search(el.get("style") or ""))


def is_italic(el: Any) -> bool:
    """``<em>``/``<i>`` or an inline ``font-style: italic``."""
    return _tag(el) in ("em", "i") or bool(_ITALIC_STYLE_RE.search(el.get("style") or ""))


def has_class(el: Any, *names: str) -> bool:
    """True if the element's class list contains any of ``names``."""
    classes = (el.get("class") or "").split()
    return any(n in classes for n in names)


def alignment(el: Any) -> str | None:
    """Horizontal alignment of a paragraph: ``left|right|center|justify`` or None.

    Reads the element's ``style``/``align``; if it has none and only wraps a single element
    (Word-paste ``<p><span><span>…``), the wrapper's alignment is used.
    """
    while el is not None:
        m = _ALIGN_RE.search(el.get("style") or "")
        if m:
            return m.group(1).lower()
        align = (el.get("align") or "").strip().lower()
        if align in ("left", "right", "center", "justify"):
            return align
        children = [c for c in el if _tag(c) is not None]
        if len(children) == 1 and not (el.text or "").strip() and not (children[0].tail or "").strip():
            el = children[0]
        else:
            return None
    return None


def image_src(img: Any) -> str | None:
    """The real image address of an ``<img>``: lazy-load attributes before ``src``."""
    for attr in ("data-src", "data-original", "data-lazy-src", "src"):
        v = (img.get(attr) or "").strip()
        if v and not v.startswith("data:"):
            return v
    return None


@dataclass
class Block:
    """One top-level unit of an article body after flattening.

    ``kind``: ``"text"`` (paragraph, heading, leaf div, list item or a run of loose inline
    content), ``"figure"``, ``"table"`` or ``"embed"`` (iframe/video). ``el`` is the lxml
    element (``None`` for a loose run, whose nodes are in ``nodes``).
    """

    kind: str
    el: Any = None
    nodes: list[Any] = field(default_factory=list)

    @cached_property
    def text(self) -> str:
        """Normalised visible text."""
        if self.el is not None:
            return clean_text(self.el)
        raw = "".join(n if isinstance(n, str) else node_text(n) for n in self.nodes)
        return normalize_text(raw, decode_entities=False)

    @cached_property
    def imgs(self) -> list[Any]:
        """``<img>`` elements inside the block, in document order."""
        if self.el is not None:
            return [] if self.kind == "embed" else list(self.el.iter("img"))
        out: list[Any] = []
        for n in self.nodes:
            if not isinstance(n, str):
                out.extend(n.iter("img"))
        return out

    @cached_property
    def empty(self) -> bool:
        """Text block with no visible text and no image (e.g. ``<p>&nbsp;</p>``)."""
        return self.kind == "text" and not self.text and not self.imgs

    def _el_test(self, fn: Callable[[Any], Any]) -> Any:
        return fn(self.el) if self.el is not None else None

    @cached_property
    def align(self) -> str | None:
        return self._el_test(alignment)

    @cached_property
    def bold(self) -> bool:
        return bool(self._el_test(lambda e: wholly(e, is_bold)))

    @cached_property
    def italic(self) -> bool:
        return bool(self._el_test(lambda e: wholly(e, is_italic)))


def flatten_blocks(container: Any, skip: Callable[[Any], bool]) -> list[Block]:
    """Split an article body element into :class:`Block` s in document order.

    Containers (``div`` etc.) that hold block-level children are recursed into; elements for
    which ``skip(el)`` is true (related boxes, songs box, attachment box …) are dropped with
    their content; inline content lying directly in a container is grouped into runs.
    """
    out: list[Block] = []
    run: list[Any] = []

    def flush() -> None:
        if run:
            out.append(Block("text", None, list(run)))
            run.clear()

    if container.text and container.text.strip():
        run.append(container.text)
    for child in container:
        tag = _tag(child)
        if tag is None or tag in ("script", "style", "noscript", "template", "input", "link", "meta"):
            pass
        elif skip(child):
            flush()
        elif tag in EMBED_TAGS or (tag == "div" and has_class(child, "embed-video", "video")):
            flush()
            out.append(Block("embed", child))
        elif tag == "table":
            flush()
            out.append(Block("table", child))
        elif tag == "figure":
            flush()
            out.append(Block("figure", child))
        elif tag in ("ul", "ol", "dl"):
            flush()
            out.extend(flatten_blocks(child, skip))
        elif tag in _HEADING_OR_PARA:
            flush()
            out.append(_leaf(child))
        elif tag in CONTAINER_TAGS or tag in BLOCK_TAGS:
            if _has_block_child(child):
                flush()
                out.extend(flatten_blocks(child, skip))
            elif tag == "span":
                run.append(child)  # inline span without blocks inside
            else:
                flush()
                out.append(_leaf(child))
        else:
            run.append(child)  # inline: a, strong, em, img, br, font …
        # Whitespace-only tails matter between inline nodes ("<b>A</b> <i>B</i>"), not
        # between blocks.
        if child.tail and (run or child.tail.strip()):
            run.append(child.tail)
    flush()
    return out


def _leaf(el: Any) -> Block:
    """A paragraph-like element; one that only wraps a video player is an embed."""
    if any(_tag(c) in EMBED_TAGS for c in el.iter()) and not clean_text(el):
        return Block("embed", el)
    return Block("text", el)


def _has_block_child(el: Any) -> bool:
    for c in el.iter():
        if c is not el and _tag(c) in _BLOCK_OR_EMBED:
            return True
    return False
