"""Captions from finding labels, with varied radiology phrasing and negations.

The training data mostly has finding labels, not reports. To let free-text prompts (a report's
findings, an instructor's sentence) map to the right content, every training image is paired with
a caption drawn at random from many phrasings of its labels, sometimes with pertinent negatives
("no pleural effusion") and sometimes with the source's real clinical note.
"""
from __future__ import annotations

import random
import re

VOCAB = [
    "No Finding", "COVID-19", "Pneumonia", "Infiltration", "Fibrosis", "Atelectasis", "Edema",
    "Effusion", "Consolidation", "Cardiomegaly", "Mass", "Nodule", "Pleural Thickening",
    "Pneumothorax", "Emphysema", "Hernia", "ARDS",
]

# Several phrasings for each finding, as a radiologist might write them.
PHRASES: dict[str, list[str]] = {
    "COVID-19": [
        # Each names COVID-19 and none says "pneumonia": COVID-19 films outnumber pneumonia films
        # six to one here, and captions that called them "COVID-19 pneumonia" taught the model that
        # a prompt saying "pneumonia" means the COVID-19 pattern.
        "bilateral peripheral ground-glass opacities consistent with COVID-19",
        "multifocal patchy airspace opacities in both lungs, typical of COVID-19",
        "COVID-19 with bilateral lower zone predominant opacities",
        "diffuse bilateral hazy opacities, viral pattern, COVID-19",
        "findings compatible with COVID-19 (SARS-CoV-2 infection)",
        "COVID-19",
    ],
    "Pneumonia": [
        "airspace opacity suggestive of pneumonia",
        "pneumonia",
        "patchy consolidation compatible with infectious pneumonia",
        "focal airspace disease concerning for pneumonia",
        "lower lobe pneumonia",
    ],
    "Infiltration": [
        "pulmonary infiltrates",
        "patchy interstitial infiltration",
        "bilateral infiltrates",
        "reticular infiltrative opacities",
    ],
    "Fibrosis": [
        "pulmonary fibrosis with coarse reticular opacities",
        "fibrotic changes in both lungs",
        "interstitial fibrosis",
        "chronic fibrotic lung disease with volume loss",
    ],
    "Atelectasis": [
        "atelectasis",
        "bibasilar atelectasis",
        "linear subsegmental atelectasis",
        "basilar atelectatic changes",
    ],
    "Edema": [
        "pulmonary edema",
        "interstitial edema with vascular congestion",
        "bilateral perihilar opacities consistent with pulmonary edema",
    ],
    "Effusion": [
        "pleural effusion",
        "small pleural effusion with blunting of the costophrenic angle",
        "layering pleural effusion",
        "moderate pleural effusion",
    ],
    "Consolidation": [
        "lobar consolidation",
        "dense consolidation",
        "airspace consolidation with air bronchograms",
    ],
    "Cardiomegaly": [
        "cardiomegaly",
        "enlarged cardiac silhouette",
        "the heart is enlarged",
        "moderate cardiomegaly",
    ],
    "Mass": ["pulmonary mass", "a large lung mass", "mass lesion in the lung"],
    "Nodule": ["pulmonary nodule", "a solitary lung nodule", "small nodular opacity"],
    "Pleural Thickening": ["pleural thickening", "apical pleural thickening"],
    "Pneumothorax": ["pneumothorax", "small apical pneumothorax", "visible pleural line with pneumothorax"],
    "Emphysema": ["emphysema", "hyperinflated lungs with emphysematous change", "flattened diaphragms, emphysema"],
    "Hernia": ["hiatal hernia", "retrocardiac hiatus hernia"],
    "ARDS": [
        "acute respiratory distress syndrome with diffuse bilateral opacities",
        "ARDS pattern, dense bilateral airspace opacification",
    ],
}

NORMAL = [
    "normal chest radiograph",
    "no acute cardiopulmonary abnormality",
    "the lungs are clear. heart size is normal. no pleural effusion or pneumothorax",
    "normal frontal chest x-ray",
    "clear lungs, normal cardiomediastinal silhouette",
    "no active disease in the chest",
    "heart and mediastinum within normal limits. lungs are clear",
    "normal study",
    "no focal consolidation, effusion or pneumothorax. normal heart size",
    "unremarkable chest radiograph",
]

NEGATIONS = {
    "Effusion": "no pleural effusion",
    "Pneumothorax": "no pneumothorax",
    "Cardiomegaly": "normal heart size",
    "Consolidation": "no focal consolidation",
    "Edema": "no pulmonary edema",
    "Mass": "no mass",
}

PREFIXES = ["", "", "", "frontal chest radiograph: ", "chest x-ray showing ", "PA chest film, ", "findings: "]


def clean_note(text: str, max_words: int = 40) -> str:
    """A clinical note shortened to its first sentences, without ages and case numbers."""
    text = re.sub(r"\s+", " ", text or "").strip()
    text = re.sub(r"\b\d+[- ]year[- ]old\b", "", text)
    words = text.split()
    return " ".join(words[:max_words])


def make_caption(labels: list[str], note: str = "", rng: random.Random | None = None) -> str:
    """One random caption for an image with these labels (and optional real note)."""
    rng = rng or random.Random()
    if note and rng.random() < 0.5:
        return clean_note(note)
    findings = [lab for lab in labels if lab != "No Finding"]
    if not findings:
        return rng.choice(PREFIXES) + rng.choice(NORMAL)
    parts = [rng.choice(PHRASES.get(lab, [lab.lower()])) for lab in findings]
    rng.shuffle(parts)
    caption = rng.choice(PREFIXES) + ", ".join(parts)
    negs = [n for k, n in NEGATIONS.items() if k not in findings]
    if negs and rng.random() < 0.35:
        caption += ". " + ". ".join(rng.sample(negs, k=min(len(negs), rng.randint(1, 2))))
    return caption


def caption_pool(labels: list[str], note: str = "", n: int = 6, seed: int = 0) -> list[str]:
    """A fixed set of distinct captions for one label set (used to pre-encode text)."""
    rng = random.Random(f"{seed}|{'|'.join(labels)}|{note[:40]}")
    seen: list[str] = []
    for _ in range(n * 6):
        c = make_caption(labels, note, rng)
        if c not in seen:
            seen.append(c)
        if len(seen) >= n:
            break
    return seen
