"""Shipped UI resources: example prompts (repo copy == package copy), icon, style sheet."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_example_prompts_are_shipped_in_the_package_and_cover_the_findings():
    repo = ROOT / "resources" / "example_prompts.json"
    pkg = ROOT / "cxrdesk" / "resources" / "example_prompts.json"
    assert repo.read_bytes() == pkg.read_bytes(), "copy resources/example_prompts.json into cxrdesk/resources/"
    prompts = json.loads(pkg.read_text(encoding="utf-8"))["prompts"]
    text = " ".join(p["prompt"].lower() for p in prompts)
    for finding in ("normal", "pneumonia", "effusion", "covid-19", "infiltrates", "fibrosis", "edema", "atelectasis"):
        assert finding in text, finding
    assert all(p["title"] and p["prompt"] for p in prompts)
    assert len({p["title"] for p in prompts}) == len(prompts)


def test_example_prompts_ask_only_for_findings_the_default_model_saw_enough_films_of():
    """The examples offer what the model draws: no finding the app would call rare (fewer than
    RARE_FILMS training films in the default model's label counts)."""
    from cxrdesk.core.data.findings import rare_findings

    counts = json.loads((ROOT / "models" / "cxrdesk-cxr256" / "cxrdesk.json").read_text())["training"]["label_counts"]
    assert counts["Cardiomegaly"] < 100  # the check below can fail: the counts hold rare findings
    for p in json.loads((ROOT / "cxrdesk" / "resources" / "example_prompts.json").read_text(encoding="utf-8"))["prompts"]:
        assert [f for f, n in rare_findings(p["prompt"], counts) if n < 70] == [], p["title"]


def test_icon_and_style_are_shipped():
    for name in ("cxrdesk.svg", "cxrdesk.png", "style.qss"):
        repo, pkg = ROOT / "resources" / name, ROOT / "cxrdesk" / "resources" / name
        assert repo.is_file() and pkg.is_file() and repo.read_bytes() == pkg.read_bytes(), name


def test_ui_loads_prompts_through_the_package():
    from cxrdesk.ui.generator_panel import finding_words, load_examples

    ex = load_examples()
    assert len(ex) >= 10
    assert finding_words("Small left pleural effusion. Heart size normal.") == ["pleural", "effusion", "heart"]


def test_core_never_imports_qt():
    for f in (ROOT / "cxrdesk" / "core").glob("*.py"):
        src = f.read_text(encoding="utf-8")
        assert "PySide6" not in src and "PyQt" not in src, f.name
