"""Lesson handouts as slides: a PPTX written with python-pptx (no Qt).

A title slide, then one film per slide (8-bit, the SYNTHETIC mark burned into the pixels), and
each case's answer and teaching note either on the slide after its film (``answers="after"``) or
all at the end after an "Answers" slide (``answers="end"``). The film slides carry only the case's
number, never its answer.
"""
from __future__ import annotations

import datetime as _dt
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .imaging.pngio import DISCLAIMER, burn_synthetic_mark, to_8bit, to_stored12

ANSWERS_MODES = ("after", "end")


@dataclass
class HandoutCase:
    image: Any  # HxW uint16 12-bit, uint8 or float [0, 1]
    answer: str
    note: str = ""


def film_png_bytes(image: Any) -> bytes:
    """The film as an 8-bit PNG with the SYNTHETIC mark burned in (what a slide shows)."""
    from PIL import Image

    stored = burn_synthetic_mark(to_stored12(image))
    buf = io.BytesIO()
    Image.fromarray(to_8bit(stored)).save(buf, format="PNG")
    return buf.getvalue()


def handout_slide_count(n_cases: int, answers: str = "after") -> int:
    """Slides in a handout of ``n_cases``: title + films + answers (+ an "Answers" divider at the end)."""
    return 1 + 2 * n_cases + (1 if answers == "end" else 0)


def write_handout(path: str | os.PathLike, title: str, cases: list[HandoutCase], *,
                  answers: str = "after", subtitle: str = "") -> Path:
    """Write the handout PPTX (atomic); returns the path. ``answers``: "after" or "end"."""
    from pptx import Presentation
    from pptx.dml.color import RGBColor
    from pptx.util import Emu, Inches, Pt

    from .fsutil import atomic_write

    if answers not in ANSWERS_MODES:
        raise ValueError(f"answers must be one of {', '.join(ANSWERS_MODES)}, not {answers!r}")
    prs = Presentation()
    prs.slide_width, prs.slide_height = Inches(13.333), Inches(7.5)
    title_layout, title_only, blank = prs.slide_layouts[0], prs.slide_layouts[5], prs.slide_layouts[6]
    W, H = prs.slide_width, prs.slide_height

    def dark(slide):
        fill = slide.background.fill
        fill.solid()
        fill.fore_color.rgb = RGBColor(0, 0, 0)

    def text_box(slide, left, top, width, height, text, size=20, bold=False, grey=False):
        tb = slide.shapes.add_textbox(left, top, width, height)
        tf = tb.text_frame
        tf.word_wrap = True
        for k, line in enumerate(str(text).split("\n")):
            p = tf.paragraphs[0] if k == 0 else tf.add_paragraph()
            p.text = line
            p.font.size = Pt(size)
            p.font.bold = bold
            p.font.color.rgb = RGBColor(0x99, 0x99, 0x99) if grey else RGBColor(0xFF, 0xFF, 0xFF)
        return tb

    s = prs.slides.add_slide(title_layout)
    s.shapes.title.text = title
    n = len(cases)
    s.placeholders[1].text = "\n".join(filter(None, [
        subtitle or f"{n} case{'s' if n != 1 else ''}, answers {'after each film' if answers == 'after' else 'at the end'}",
        f"Synthetic chest radiographs made by cxrdesk, {_dt.date.today().isoformat()}",
        f"{DISCLAIMER}: for education only",
    ]))

    def film_slide(i: int, case: HandoutCase, size: int = 0, left: int | None = None, top: int | None = None):
        slide = prs.slides.add_slide(blank)
        dark(slide)
        h = Emu(size or int(H * 0.86))
        img = np.asarray(case.image)
        w = Emu(int(h * img.shape[1] / img.shape[0]))
        slide.shapes.add_picture(io.BytesIO(film_png_bytes(case.image)),
                                 Emu(left if left is not None else (W - w) // 2),
                                 Emu(top if top is not None else int(H * 0.07)), w, h)
        text_box(slide, Inches(0.3), Inches(0.2), Inches(3), Inches(0.6), f"Case {i + 1}", size=28, bold=True)
        text_box(slide, Inches(0.3), H - Inches(0.5), W - Inches(0.6), Inches(0.4),
                 f"{DISCLAIMER} - synthetic image for teaching", size=11, grey=True)
        return slide

    def answer_slide(i: int, case: HandoutCase):
        size = int(H - Inches(1.7))  # below the "Case N" label, above the footer
        slide = film_slide(i, case, size=size, left=int(Inches(0.3)), top=int(Inches(0.9)))
        img = np.asarray(case.image)
        x = Inches(0.7) + Emu(int(size * img.shape[1] / img.shape[0]))
        text_box(slide, x, Inches(0.6), W - x - Inches(0.3), Inches(1.2), f"Answer: {case.answer}", size=32, bold=True)
        if case.note:
            text_box(slide, x, Inches(1.9), W - x - Inches(0.3), Inches(4.5), case.note, size=20)

    for i, c in enumerate(cases):
        film_slide(i, c)
        if answers == "after":
            answer_slide(i, c)
    if answers == "end":
        s = prs.slides.add_slide(title_only)
        s.shapes.title.text = "Answers"
        for i, c in enumerate(cases):
            answer_slide(i, c)
    buf = io.BytesIO()
    prs.save(buf)
    data = buf.getvalue()
    return atomic_write(path, lambda fh: fh.write(data))
