"""Prompt hints: which findings a prompt asks for (a NegEx-style rule), which of them the model saw
few films of (the model folder's label counts) or draws poorly (its findings check)."""
from __future__ import annotations

import re


# How a free-text prompt names each finding (case-blind regular expressions, anchored at a word
# start). Used to tell a user when a prompt asks for a finding the model saw few films of.
FINDING_TERMS: dict[str, str] = {
    "COVID-19": r"covid|sars-cov-2|coronavirus",
    "Pneumonia": r"pneumoni",
    "Infiltration": r"infiltrat",
    "Fibrosis": r"fibros|fibrotic",
    "Atelectasis": r"atelecta",
    "Edema": r"o?edema",
    "Effusion": r"effusion",
    "Consolidation": r"consolidat",
    "Cardiomegaly": r"cardiomegaly|enlarged (?:heart|cardiac)|heart is enlarged",
    "Mass": r"mass(?:es)?\b",
    "Nodule": r"nodul",
    "Pleural Thickening": r"pleural thickening",
    "Pneumothorax": r"pneumothora",
    "Emphysema": r"emphysema",
    "Hernia": r"hernia",
    "ARDS": r"ards\b|respiratory distress",
}
_NEGATION = re.compile(r"\b(?:no|not|without|negative for|free of|absence of|resolved)\b")
_CLAUSE = re.compile(r"[.;:\n]|\bbut\b|\bhowever\b|\balthough\b")
NEGATION_WORDS = 6  # a negation covers the findings up to this many words after it ("no focal
#                     consolidation, effusion or pneumothorax"), within its clause


def mentioned_findings(prompt: str) -> list[str]:
    """The findings (VOCAB labels) that ``prompt`` asks for, in order, leaving out negated ones:
    "Cardiomegaly. No pleural effusion." -> ["Cardiomegaly"]. A simple NegEx-style rule (a
    negation word covers the next few words of its clause), good for a hint, not for parsing
    reports."""
    found: list[tuple[int, int, str]] = []  # (clause, position, label)
    for k, clause in enumerate(_CLAUSE.split(prompt.lower())):
        cues = [m.end() for m in _NEGATION.finditer(clause)]
        for label, pattern in FINDING_TERMS.items():
            for m in re.finditer(r"\b(?:" + pattern + ")", clause):
                if not any(c <= m.start() and len(clause[c:m.start()].split()) < NEGATION_WORDS for c in cues):
                    found.append((k, m.start(), label))
                    break
    labels: list[str] = []
    for *_, label in sorted(found):
        if label not in labels:
            labels.append(label)
    return labels


RARE_FILMS = 100  # a finding with fewer training films than this is called rare (hint only)


def rare_findings(prompt: str, label_counts: dict, below: int = RARE_FILMS) -> list[tuple[str, int]]:
    """(finding, training films) for each finding the prompt asks for that the model was trained on
    fewer than ``below`` films of; empty when the model folder records no counts."""
    if not label_counts:
        return []
    return [(label, int(label_counts.get(label, 0))) for label in mentioned_findings(prompt)
            if int(label_counts.get(label, 0)) < below]


def rare_note(rare: list[tuple[str, int]]) -> str:
    """'Few training films show cardiomegaly (13): the model may not draw it convincingly.'"""
    names = ", ".join(f"{_name(label)} ({n})" for label, n in rare)
    them = "it" if len(rare) == 1 else "them"
    return f"Few training films show {names}: the model may not draw {them} convincingly."


WEAK_SHARE = 0.5  # a finding is drawn poorly when the judge recognises it in fewer than half as
#                   many generated films as real ones (hint only; see evaluate.findings_check)
_READS_AS = {"normal": "normal-looking films", "covid": "COVID-19-like films", "other": "films with other findings"}


def _name(label: str) -> str:
    """A label as written in a sentence: 'COVID-19', 'ARDS' as they are; 'Effusion' -> 'effusion'."""
    return label if label.isupper() else label.lower()


def record_class(labels: list[str]) -> str:
    """The judge's class of a film with these labels: "normal", "covid" or "other" (finding)."""
    if labels == ["No Finding"] or not labels:
        return "normal"
    if "COVID-19" in labels:
        return "covid"
    return "other"


def weak_findings(prompt: str, check: dict | None) -> list[dict]:
    """The findings ``prompt`` asks for that the model's findings check (the model folder's
    findings_check.json) shows it draws poorly: the judge recognises the finding's class in fewer
    than WEAK_SHARE times as many of its films as of real films. Empty when the folder has no check.
    A finding whose films mostly read as the class of another finding the prompt asks for is left
    out: "COVID-19 pneumonia" asks for the COVID-19-like films that pneumonia prompts give."""
    by_label = {f.get("label"): f for f in (check or {}).get("findings", []) if isinstance(f, dict)}
    asked = mentioned_findings(prompt)
    weak = []
    for label in asked:
        f = by_label.get(label)
        if not drawn_poorly(f):
            continue
        reads = _mostly_read_as(f)
        if reads != f["expected"] and any(record_class([o]) == reads for o in asked if o != label):
            continue
        weak.append(f)
    return weak


def _mostly_read_as(f: dict) -> str:
    """The class the judge read most of a findings-check entry's generated films as."""
    return max(f["generated"], key=f["generated"].get)


def drawn_poorly(f: dict | None) -> bool:
    """One findings-check entry shows the finding drawn poorly (False for no or a malformed entry)."""
    try:
        gen, real, want = f["generated"], f["real"], f["expected"]
        return bool(real) and float(gen[want]) < WEAK_SHARE * float(real[want]) and int(f["n"]) > 0
    except (TypeError, KeyError, ValueError):
        return False


def weak_note(f: dict) -> str:
    """'Asked for pneumonia, this model mostly draws COVID-19-like films: a classifier read 16 of the
    16 films it drew for its findings check that way, and 1 of 39 real pneumonia films.'"""
    gen, real, n, real_n = f["generated"], f["real"], int(f["n"]), int(f["real_n"])
    reads = _mostly_read_as(f)
    name = _name(f["label"])
    if reads == f["expected"]:  # still the largest share, but far below real films
        want = f["expected"]
        return (f"This model draws {name} less clearly than real films show it: a classifier recognised it "
                f"in {round(gen[want] * n)} of the {n} films it drew for its findings check, and "
                f"{round(real[want] * real_n)} of {real_n} real {name} films.")
    return (f"Asked for {name}, this model mostly draws {_READS_AS.get(reads, reads)}: a classifier read "
            f"{round(gen[reads] * n)} of the {n} films it drew for its findings check that way, and "
            f"{round(real.get(reads, 0) * real_n)} of {real_n} real {name} films.")
