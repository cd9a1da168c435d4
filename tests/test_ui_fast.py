"""Fast mode in the app (issue 28): the Fast / Full switch, films drawn by the distilled student in the
History and the exports, drafts while typing, the Model info row. Tiny models made in the tests."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtGui import QTextCursor  # noqa: E402

from cxrdesk.ui.generator_panel import GeneratorPanel  # noqa: E402
from tests.test_ui_app import GEN_TIMEOUT, make_window  # noqa: E402, F401

STUDENT = {"steps": 4, "distill_steps": 7}
NOTE = "this model folder has no distilled student ('cxrdesk train distill' makes one): use full generation"


@pytest.fixture(scope="module")
def fast_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a student (as tests/test_fast.py makes it)."""
    from diffusers import UNet2DConditionModel

    from cxrdesk.core.training import distill as D

    teacher = UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet")
    return D.export_student(tiny_model_dir, D.build_student(teacher), tmp_path_factory.mktemp("uifast") / "tiny-fast",
                            step=7)


def _loaded(qtbot, w):
    w.load_model()
    qtbot.waitUntil(lambda: w.model_state == "loaded", timeout=GEN_TIMEOUT)
    return w


def _generate(qtbot, w):
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as blocker:
        w.generator.request_generate()
    assert blocker.args[0] == "done", blocker.args
    return w.history.entries()[-1]


def _quick(g, seed=3, prompt="Small left pleural effusion"):
    g.prompt_edit.setPlainText(prompt)
    g.random_seed_check.setChecked(False)
    g.seed_spin.setValue(seed)
    g.batch_spin.setValue(1)


# ---------------------------------------------------------------------- the switch (panel alone)
def test_switch_follows_the_model_disables_what_does_not_apply_and_is_remembered(qtbot, tmp_path):
    g = GeneratorPanel()
    qtbot.addWidget(g)
    g.steps_spin.setValue(17)
    g.negative_edit.setText("tubes")
    assert g.job_params()["fast"] == "auto"  # before a model is loaded: the worker decides
    g.set_student(None, NOTE)
    assert not g.fast_button.isEnabled() and g.full_button.isChecked() and not g.fast_button.isChecked()
    assert NOTE in g.fast_button.toolTip() and "no distilled student" in g.mode_note.text()
    assert not g.draft_check.isEnabled() and not g.draft_check.isChecked() and NOTE in g.draft_check.toolTip()
    p = g.job_params()
    assert p["fast"] is False and p["steps"] == 17 and p["negative_prompt"] == "tubes"
    assert g.sampler_box.isEnabled() and g.negative_edit.isEnabled() and g.steps_spin.isEnabled()

    g.set_student(STUDENT)  # a model with a student: Fast by default, the student's steps shown
    assert g.fast_button.isEnabled() and g.fast_button.isChecked() and g.act_fast.isChecked()
    assert g.steps_spin.value() == 4 and not g.steps_spin.isEnabled()
    for wid in (g.sampler_box, g.negative_edit):
        assert not wid.isEnabled() and "Not used in Fast mode" in wid.toolTip()
    assert "4 steps" in g.steps_spin.toolTip() and "Ctrl+Shift+F" in g.fast_button.toolTip()
    p = g.job_params()
    assert p["fast"] is True and p["steps"] == 4 and p["negative_prompt"] == ""
    assert g.negative_edit.text() == "tubes"  # kept for Full

    qtbot.mouseClick(g.full_button, Qt.LeftButton)  # the user's choice
    assert g.full_button.isChecked() and not g.act_fast.isChecked()
    assert g.steps_spin.value() == 17 and g.steps_spin.isEnabled() and g.sampler_box.isEnabled()
    assert g.job_params()["fast"] is False and g.job_params()["negative_prompt"] == "tubes"
    g.toggle_fast()  # the shortcut's slot
    assert g.is_fast() and g.steps_spin.value() == 4

    s = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    g.save_settings(s)
    assert int(s.value("generator/steps")) == 17  # the Full steps, never the student's
    g.set_fast(False)
    g.save_settings(s)
    g2 = GeneratorPanel()
    qtbot.addWidget(g2)
    g2.restore_settings(s)
    g2.set_student(STUDENT)
    assert not g2.is_fast() and g2.full_button.isChecked() and g2.steps_spin.value() == 17


def test_the_adherence_box_follows_the_students_own_guidance_in_fast_mode_until_the_user_picks_one(qtbot):
    g = GeneratorPanel()
    qtbot.addWidget(g)
    g.set_recommended_guidance(4.0)
    g.set_student({**STUDENT, "guidance": 7.0})  # Fast by default: the student's guidance
    assert g.is_fast() and g.guidance_spin.value() == 7.0 and "recommends 7" in g.guidance_spin.toolTip()
    assert g.job_params()["guidance_scale"] == 7.0
    g.set_fast(False)  # Full: the model's
    assert g.guidance_spin.value() == 4.0 and g.job_params()["guidance_scale"] == 4.0
    g.guidance_spin.setValue(5.5)  # the user's own value stays in both modes
    g.set_fast(True)
    assert g.guidance_spin.value() == 5.5 and "You chose 5.5" in g.guidance_spin.toolTip()
    g.guidance_spin.setValue(7.0)  # set back to the recommendation: follows the model again
    g.set_fast(False)
    assert g.guidance_spin.value() == 4.0
    g.set_student(STUDENT)  # a student without its own guidance: the model's in both modes
    g.set_fast(True)
    assert g.guidance_spin.value() == 4.0
    from cxrdesk.ui.model_panel import student_text

    assert student_text({"student": {**STUDENT, "guidance": 7.0}})[0].startswith("yes: distilled student, 4 steps at "
                                                                                "adherence 7,")


def test_settings_from_before_fast_mode_give_fast_where_the_model_has_a_student(qtbot, tmp_path):
    s = QSettings(str(tmp_path / "old.ini"), QSettings.IniFormat)
    for k, v in {"settings_version": 3, "steps": 23, "sampler": "euler", "prompt": "Cardiomegaly"}.items():
        s.setValue(f"generator/{k}", v)
    s.setValue("generator/mode", "turbo")  # a value this version does not know: as if missing
    g = GeneratorPanel()
    qtbot.addWidget(g)
    g.restore_settings(s)
    assert g.steps_spin.value() == 23 and g.sampler_box.currentData() == "euler"
    g.set_student(STUDENT)
    assert g.is_fast() and g.draft_check.isChecked() and g.steps_spin.value() == 4
    g.set_student(None, NOTE)  # another model, without a student: Full with the old steps
    assert not g.is_fast() and g.steps_spin.value() == 23 and g.prefer_fast  # the preference stays
    g.save_settings(s)
    assert s.value("generator/mode") == "fast" and s.value("generator/draft") == "auto"


def test_draft_option_defaults_to_the_student_and_a_choice_is_kept(qtbot, tmp_path):
    g = GeneratorPanel()
    qtbot.addWidget(g)
    g.set_student(STUDENT)
    assert g.draft_check.isChecked() and g.drafting()
    g.draft_check.setChecked(False)  # the user turns drafts off: off with every model from now on
    s = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    g.save_settings(s)
    g2 = GeneratorPanel()
    qtbot.addWidget(g2)
    g2.restore_settings(s)
    g2.set_student(STUDENT)
    assert not g2.draft_check.isChecked() and not g2.drafting()
    drafts = []
    g2.draftRequested.connect(drafts.append)
    g2.prompt_edit.setPlainText("Cardiomegaly")
    assert not g2._draft_timer.isActive() and drafts == []


def test_a_pause_in_typing_asks_for_one_draft_and_a_keystroke_stops_the_running_one(qtbot):
    g = GeneratorPanel()
    qtbot.addWidget(g)
    g.set_student(STUDENT)
    drafts, stops = [], []
    g.draftRequested.connect(drafts.append)
    g.draftStopRequested.connect(lambda: stops.append(1))
    g.prompt_edit.setFocus()
    qtbot.keyClicks(g.prompt_edit, "Left")
    assert len(stops) == 4 and g._draft_timer.isActive() and drafts == []  # each key: stop, restart the pause
    qtbot.waitUntil(lambda: len(drafts) == 1, timeout=5000)
    d = drafts[0]
    assert d["draft"] is True and d["fast"] is True and d["steps"] == 4 and d["batch"] == 1
    assert d["prompt"].endswith("Left") and d["negative_prompt"] == ""
    g.random_seed_check.setChecked(True)
    assert g.draft_params()["seed"] == g.draft_params()["seed"]  # one draft seed: drafts differ by the text
    g.set_params({"prompt": "Cardiomegaly", "steps": 20, "fast": False})  # filled in (reuse): no draft
    assert not g._draft_timer.isActive()
    g.set_student(None, NOTE)
    g.prompt_edit.setPlainText("Pneumothorax")
    assert not g._draft_timer.isActive()


# ---------------------------------------------------------------------- the window
def test_fast_film_in_history_tooltips_exports_and_reuse(qtbot, make_window, fast_model_dir, tmp_path):
    from cxrdesk.core.dicom.reader import read_dicom
    from cxrdesk.core.imaging.pngio import read_png
    from cxrdesk.ui.history_strip import entry_tooltip

    w = make_window(fast_model_dir)
    g = w.generator
    g.draft_check.setChecked(False)
    _quick(g)
    e = _generate(qtbot, w)  # asked for before the model was known: "auto", the student drew it
    assert e.params["fast"] is True and e.params["sampler"] == "lcm" and e.params["steps"] == 4
    assert g.is_fast() and g.steps_spin.value() == 4
    assert "fast (distilled, 4 steps)" in e.summary() and "fast (distilled, 4 steps)" in entry_tooltip(e)
    assert w.history.list.item(0).text().splitlines()[1].startswith("fast")
    assert w.doc.title.startswith("Generated (fast)")
    png = w.export_png(str(tmp_path / "f.png"), bits=16, apply_window=False)
    meta = read_png(png).metadata
    assert meta["fast"] is True and meta["sampler"] == "lcm" and meta["steps"] == 4
    d = read_dicom(w.export_dicom(str(tmp_path / "f.dcm")))
    assert d.params["fast"] is True and d.params["sampler"] == "lcm"

    qtbot.mouseClick(g.full_button, Qt.LeftButton)
    g.steps_spin.setValue(3)
    full = _generate(qtbot, w)
    assert full.params["fast"] is False and full.params["sampler"] != "lcm" and full.params["steps"] == 3
    assert "3 steps" in full.summary() and "fast" not in w.history.list.item(1).text()
    w.reuse_entry(e)  # a fast film's parameters: the switch goes to Fast, the Full steps stay
    assert g.is_fast() and g.steps_spin.value() == 4
    w.reuse_entry(full)
    assert not g.is_fast() and g.steps_spin.value() == 3
    keys = {a.text().replace("&", ""): a.shortcut().toString() for a in w.actions()}
    assert keys["Fast generation (distilled)"] == "Ctrl+Shift+F" and keys["Draft while typing"] == "Ctrl+Shift+D"
    assert keys["Keep the draft"] == "Ctrl+K"
    qtbot.keyClick(w, Qt.Key_F, Qt.ControlModifier | Qt.ShiftModifier)
    assert g.is_fast()


def test_model_without_student_generates_full_and_says_why(qtbot, make_window, tiny_model_dir):
    w = _loaded(qtbot, make_window(tiny_model_dir))
    g = w.generator
    assert not g.fast_button.isEnabled() and "train distill" in g.fast_button.toolTip()
    assert not g.draft_check.isEnabled()
    assert w.model_panel.fields["fast"].text().startswith("no")
    assert w.model_panel.fast_note.isVisibleTo(w.model_panel) and "train distill" in w.model_panel.fast_note.text()
    qtbot.keyClick(w, Qt.Key_F, Qt.ControlModifier | Qt.ShiftModifier)
    assert not g.is_fast() and "Fast mode is not available" in w.statusBar().currentMessage()
    _quick(g)
    g.steps_spin.setValue(2)
    e = _generate(qtbot, w)
    assert e.params["fast"] is False and e.params["steps"] == 2


def test_model_panel_names_the_student(qtbot, make_window, fast_model_dir):
    w = _loaded(qtbot, make_window(fast_model_dir))
    text = w.model_panel.fields["fast"].text()
    assert text.startswith("yes") and "4 steps" in text and "7 training steps" in text
    assert not w.model_panel.fast_note.isVisibleTo(w.model_panel)


def test_a_draft_covers_the_film_without_saving_and_keep_or_esc_decide(qtbot, make_window, fast_model_dir):
    w = _loaded(qtbot, make_window(fast_model_dir))
    g = w.generator
    _quick(g, seed=5, prompt="Normal chest")
    film = _generate(qtbot, w)
    files = sorted(p.name for p in w.store.root.rglob("*.png"))
    g.prompt_edit.setFocus()
    g.prompt_edit.moveCursor(QTextCursor.End)
    qtbot.keyClicks(g.prompt_edit, " with cardiomegaly")
    qtbot.waitUntil(lambda: w.drafts.shown() and not w.drafts.running(), timeout=GEN_TIMEOUT)
    assert w.doc.title.startswith("DRAFT") and w.doc.entry is None and w.doc.params["fast"] is True
    assert w.doc.params["prompt"] == "Normal chest with cardiomegaly"
    assert w.view.notice().startswith("DRAFT")
    assert g.draft_bar.isVisibleTo(g) and g.keep_button.isEnabled() and "DRAFT" in g.draft_label.text()
    assert len(w.history.entries()) == 1 and sorted(p.name for p in w.store.root.rglob("*.png")) == files
    assert w.drafts.under.entry.id == film.id and w.act_cancel.isEnabled() and "draft" in w.act_cancel.text()

    qtbot.keyClick(w, Qt.Key_Escape)  # Esc: the film made on purpose comes back
    assert not w.drafts.shown() and w.doc.entry.id == film.id and not g.draft_bar.isVisibleTo(g)
    np.testing.assert_array_equal(w.view.image(), film.image())
    assert not w.act_cancel.isEnabled() and w.act_cancel.text() == "&Cancel generation"

    qtbot.keyClicks(g.prompt_edit, ".")
    qtbot.waitUntil(lambda: w.drafts.shown() and not w.drafts.running(), timeout=GEN_TIMEOUT)
    draft_image = w.doc.data
    arrow = {"kind": "arrow", "from": [10.0, 10.0], "to": [30.0, 40.0]}
    w.view.set_annotations([arrow])
    w._on_annotated(w.view)  # an arrow drawn on the draft
    qtbot.keyClick(w, Qt.Key_K, Qt.ControlModifier)  # Keep: into the History as a fast film
    entries = w.history.entries()
    assert len(entries) == 2 and entries[-1].params["fast"] is True and w.doc.entry.id == entries[-1].id
    assert w.doc.annotations == [arrow]  # kept with the film (its annotations file)
    np.testing.assert_array_equal(entries[-1].image(), draft_image)
    assert w.prev_doc.entry.id == film.id  # the film made on purpose is the previous one, not pushed out
    assert not w.drafts.shown() and not g.draft_bar.isVisibleTo(g)

    qtbot.keyClicks(g.prompt_edit, " ")  # a draft, then a History click: the draft never becomes "previous"
    qtbot.waitUntil(lambda: w.drafts.shown() and not w.drafts.running(), timeout=GEN_TIMEOUT)
    w.show_entry(film)
    assert not w.drafts.shown() and w.doc.entry.id == film.id and w.prev_doc.entry.id == entries[-1].id


def test_drafts_never_queue_the_newest_wins_and_a_generation_comes_first(qtbot, make_window, fast_model_dir):
    w = _loaded(qtbot, make_window(fast_model_dir))
    g = w.generator
    g.draft_check.setChecked(True)
    sent = []
    w.host.requestGenerate.connect(lambda job: sent.append(dict(job)))
    base = g.draft_params()
    # no events are handled between these calls: the first draft is still running for the GUI
    w.drafts.request(dict(base, prompt="first"))
    w.drafts.request(dict(base, prompt="second"))
    w.drafts.request(dict(base, prompt="third"))
    assert [j["prompt"] for j in sent] == ["first"] and w.drafts._waiting["prompt"] == "third"
    qtbot.waitUntil(lambda: w.drafts.shown() and not w.drafts.running(), timeout=GEN_TIMEOUT)
    assert [j["prompt"] for j in sent] == ["first", "third"]  # the stale one's film is never shown
    assert w.doc.params["prompt"] == "third" and len(w.history.entries()) == 0

    _quick(g, seed=9, prompt="Cardiomegaly")
    g.set_fast(False)
    g.steps_spin.setValue(2)
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT):
        g.request_generate()
        w.drafts.request(dict(base, prompt="while generating"))  # refused: a film is being made
    assert "while generating" not in [j["prompt"] for j in sent]
    e = w.history.entries()[-1]
    assert w.doc.entry.id == e.id and not e.params["fast"]  # the Generate replaced the draft on screen
    assert not w.drafts.shown()
    w.drafts.request(dict(base, prompt="after"))
    assert w.drafts.running()
    w.close()  # closing stops a running draft and the typing timer
    assert not g._draft_timer.isActive()


def test_fast_films_use_the_students_own_sampler_whatever_the_full_mode_sampler_box_says(qtbot, make_window,
                                                                                        fast_model_dir, tmp_path):
    import json
    import shutil

    folder = tmp_path / "guided"
    shutil.copytree(fast_model_dir, folder)
    meta = json.loads((folder / "cxrdesk.json").read_text())
    meta["student"]["sampler"] = "model"  # a guidance-distilled student: sampled with the model's own sampler
    (folder / "cxrdesk.json").write_text(json.dumps(meta))
    w = make_window(folder)
    g = w.generator
    g.draft_check.setChecked(False)
    _quick(g)
    qtbot.mouseClick(g.full_button, Qt.LeftButton)
    g.sampler_box.setCurrentIndex(g.sampler_box.findData("ddim"))  # chosen for Full
    qtbot.mouseClick(g.fast_button, Qt.LeftButton)
    e = _generate(qtbot, w)
    assert e.params["fast"] is True and e.params["sampler"] == w.host.worker.pipe.own_sampler() != "ddim"
    qtbot.mouseClick(g.full_button, Qt.LeftButton)
    assert _generate(qtbot, w).params["sampler"] == "ddim"


def test_fast_films_show_quick_previews_and_decode_once_full_films_decode_every_n_steps(qtbot, make_window,
                                                                                       fast_model_dir):
    w = make_window(fast_model_dir)
    g = w.generator
    g.draft_check.setChecked(False)
    _quick(g)
    g.preview_spin.setValue(1)  # a sharp (VAE) preview after every step
    seen = []
    w.host.worker.preview.connect(lambda job, image, step, total, full: seen.append((step, total, full)))
    e = _generate(qtbot, w)
    assert e.params["fast"] is True
    steps = e.params["steps"]
    assert [s for s, t, f in seen if f] == [steps]  # the one VAE decode: the film itself
    assert [m["step"] for m in e.step_metrics] == [steps]
    assert [s for s, t, f in seen if not f] == list(range(1, steps))  # every step got a quick preview
    seen.clear()
    qtbot.mouseClick(g.full_button, Qt.LeftButton)
    g.steps_spin.setValue(3)
    full = _generate(qtbot, w)
    assert [s for s, t, f in seen if f][:2] == [1, 2] and [m["step"] for m in full.step_metrics][:2] == [1, 2]
