"""``Sequential.summary``: Keras 3's table, character for character (keras/src/utils/
summary_utils.py renders it with rich; this is the same layout without rich)."""

from __future__ import annotations

import math
import shutil
from typing import Any, Callable


def readable_size(nbytes: float) -> str:
    """Keras's readable_memory_size: 1024-based, two decimals."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes / 1024 < 1:
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} PB"


def _column_widths(line_length: int, positions: list[float], n: int) -> list[int]:
    """The cells' widths between the borders, padding included: Keras asks rich for columns of
    int(pos * line_length) - previous characters plus one space each side in a table of
    line_length characters; rich takes the excess out of the columns equally (its
    ratio_reduce, rounding half to even), left to right."""
    widths, current = [], 0
    for pos in positions:
        w = int(pos * line_length) - current if pos <= 1 else int(pos) - current
        if w < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(w)
        current += w
    cells = [w + 2 for w in widths]
    excess = sum(cells) - (line_length - (n + 1))
    if excess > 0:
        remaining, ratio = excess, n
        for i in range(n):
            cut = min(cells[i], round(remaining / ratio))
            cells[i] -= cut
            remaining -= cut
            ratio -= 1
    elif excess < 0:  # rich's ratio_distribute: widened in proportion to the widths
        remaining, ratio = -excess, sum(cells)
        for i in range(n):
            add = math.ceil(cells[i] * remaining / ratio)
            ratio -= cells[i]
            cells[i] += add
            remaining -= add
    return cells


def _wrap(text: str, inner: int) -> list[str]:
    """rich's cell text: words wrapped greedily at spaces, a word too long cut with an
    ellipsis (overflow="ellipsis")."""
    lines: list[str] = []
    for word in text.split(" "):
        if len(word) > inner:
            word = word[:inner - 1] + "…"
        if lines and len(lines[-1]) + 1 + len(word) <= inner:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _row(cells: list[str], widths: list[int], align: list[str], sep: str) -> str:
    wrapped = [_wrap(text, w - 2) for text, w in zip(cells, widths)]
    out = []
    for k in range(max(len(c) for c in wrapped)):
        parts = []
        for lines, w, a in zip(wrapped, widths, align):
            text, inner = (lines[k] if k < len(lines) else ""), w - 2
            body = (text.rjust(inner) if a == "right" else text.center(inner)
                    if a == "center" else text.ljust(inner))
            parts.append(" " + body + " ")
        out.append(sep + sep.join(parts) + sep)
    return "\n".join(out)


def summary_text(model: Any, line_length: int | None = None,
                 positions: list[float] | None = None, show_trainable: bool = False) -> str:
    header = ["Layer (type)", "Output Shape", "Param #"]
    align = ["left", "left", "right"]
    default = 88
    positions = list(positions or [0.45, 0.80, 1.0])
    if show_trainable:
        default += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header.append("Trainable")
        align.append("center")
    line_length = line_length or min(default, shutil.get_terminal_size().columns - 4)
    widths = _column_widths(line_length, positions, len(header))

    rows = []
    for layer in model.layers:
        kind = type(layer).__name__
        if model.built:
            fields = [f"{layer.name} ({kind})", f"(None, {layer.units})",
                      f"{layer.count_params():,}"]
        else:  # (Keras: a layer without weights counts 0 even unbuilt)
            fields = [f"{layer.name} ({kind})", "?", "0 (unbuilt)" if kind == "Dense" else "0"]
        if show_trainable:  # (Keras: "-" for a layer without weights)
            has_weights = model.built and kind == "Dense"
            fields.append(("Y" if layer.trainable else "N") if has_weights else "-")
        rows.append(fields)

    trainable = sum(l.count_params() for l in model.layers if l.trainable) if model.built else 0
    frozen = sum(l.count_params() for l in model.layers if not l.trainable) if model.built else 0
    opt = model._optimizer_param_count()  # None until the optimizer is built (first step)
    total = trainable + frozen + (opt or 0)

    def bar(left: str, mid: str, right: str, fill: str) -> str:
        return left + mid.join(fill * w for w in widths) + right

    lines = [f'Model: "{model.name}"', bar("┏", "┳", "┓", "━"), _row(header, widths, align, "┃"),
             bar("┡", "╇", "┩", "━")]
    for i, r in enumerate(rows):
        if i:
            lines.append(bar("├", "┼", "┤", "─"))
        lines.append(_row(r, widths, align, "│"))
    lines.append(bar("└", "┴", "┘", "─"))
    lines.append(f" Total params: {total:,} ({readable_size(4 * total)})")
    lines.append(f" Trainable params: {trainable:,} ({readable_size(4 * trainable)})")
    lines.append(f" Non-trainable params: {frozen:,} ({readable_size(4 * frozen)})")
    if opt is not None:
        lines.append(f" Optimizer params: {opt:,} ({readable_size(4 * opt)})")
    return "\n".join(lines) + "\n"


def print_summary(model: Any, line_length: int | None, positions: list[float] | None,
                  print_fn: Callable[..., Any] | None, show_trainable: bool) -> None:
    text = summary_text(model, line_length, positions, show_trainable)
    if print_fn is None:
        print(text, end="")
    else:  # as Keras: the whole table in one call
        print_fn(text)
