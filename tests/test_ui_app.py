"""The real main window, offscreen: generation with a tiny model, cancel, errors, settings, export."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit,  # noqa: E402
                               QPlainTextEdit, QSlider)

from cxrdesk.ui.mainwindow import MainWindow  # noqa: E402

GEN_TIMEOUT = 120_000  # ms; generous for a loaded 2-core machine, never a timing assertion


@pytest.fixture
def make_window(qtbot):
    made = []

    def make(model=None, **kw):
        w = MainWindow(model=None if model is None else str(model), preload=False, **kw)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture
def window(make_window, tiny_model_dir):
    return make_window(tiny_model_dir)


def _set_quick(w, steps=3, seed=7, prompt="Small left pleural effusion. Heart size normal."):
    g = w.generator
    g.prompt_edit.setPlainText(prompt)
    g.steps_spin.setValue(steps)
    g.random_seed_check.setChecked(seed is None)
    if seed is not None:
        g.seed_spin.setValue(seed)
    g.batch_spin.setValue(1)
    g.preview_spin.setValue(1)


def _generate(qtbot, w):
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as blocker:
        qtbot.mouseClick(w.generator.generate_button, Qt.LeftButton)
    return blocker.args


def test_window_starts_with_panels_menus_and_status(window):
    w = window
    titles = {d.windowTitle() for d in (w.dock_generator, w.dock_enhance, w.dock_dataset, w.dock_model,
                                         w.dock_history)}
    assert titles == {"Generator", "Enhancement", "Dataset browser", "Model info", "History"}
    menus = [a.text().replace("&", "") for a in w.menuBar().actions()]
    assert menus[0] == "File" and "View" in menus and menus[-1] == "Help"
    assert w.model_label.text() == "Model: not loaded"
    assert w.device_label.text().startswith("Device")
    # no model import at start-up: torch is loaded by the worker thread on first use
    assert w.model_state == "not loaded"
    keys = {a.text(): [s.toString() for s in a.shortcuts()] for a in w.actions()}
    assert "Ctrl+Return" in keys["&Generate"]
    assert keys["&Cancel generation"] == ["Esc"]
    assert keys["Zoom to &fit"] == ["F"] and keys["Zoom &1:1"] == ["1"]
    assert keys["&Invert"] == ["I"] and keys["&Reset window/level and inversion"] == ["R"]
    # the generator starts with a usable example prompt
    assert w.generator.prompt_edit.toPlainText().strip()


def test_every_control_has_a_tooltip(window):
    missing = []
    for cls in (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QPlainTextEdit, QSlider):
        for wid in window.findChildren(cls):
            if not wid.isVisibleTo(window) or wid.objectName().startswith("qt_"):
                continue
            if type(wid).__name__ in ("QDockWidgetTitleButton", "QToolButton") and not wid.text():
                continue  # Qt's own dock/scroll buttons
            if isinstance(wid, QLineEdit) and isinstance(wid.parent(), (QComboBox, QAbstractSpinBox)):
                continue
            w, tip = wid, ""
            while w is not None and not tip:
                tip = w.toolTip()
                w = w.parentWidget() if not tip and w.parentWidget() is not window else None
            if not tip:
                missing.append(f"{type(wid).__name__} {getattr(wid, 'text', lambda: '')()!r}")
    assert not missing, missing


def test_generate_shows_previews_then_final_image(qtbot, window):
    w = window
    _set_quick(w, steps=3, seed=7)
    previews = []
    w.previewShown.connect(lambda s, t: previews.append((s, t)))
    status, msg = _generate(qtbot, w)
    assert status == "done", msg
    assert previews, "no live preview reached the view"
    assert all(t == 3 for _, t in previews)
    assert w.model_state == "loaded"
    assert w.model_label.text().startswith("Model: tiny-random")
    assert "CPU" in w.device_label.text()
    entries = w.history.entries()
    assert len(entries) == 1
    e = entries[0]
    assert e.seed == 7 and e.params["steps"] == 3
    # the final image is what the view shows, in 12-bit data units, marked synthetic
    assert w.view.image() is not None and w.view.image().dtype == np.uint16
    np.testing.assert_array_equal(w.view.image(), e.image())
    assert w.view.is_synthetic()
    assert w.generator.seed_used_label.text() == "7"
    assert len(w.generator.chart.points) == 3
    assert "contrast" in w.generator.final_label.text()
    # persisted in the data folder (PNG + JSON), reloadable
    from cxrdesk.ui.history import HistoryStore
    from cxrdesk.ui.paths import results_dir

    saved = HistoryStore(results_dir()).recent()
    assert [s.id for s in saved] == [e.id]
    np.testing.assert_array_equal(saved[0].image(), e.image())
    # model info panel filled
    assert w.model_panel.fields["unet"].text() != "-"
    assert w.model_panel.fields["latent"].text() == "4 x 32 x 32"
    # the worker's UNet graphs, made after the first film (which the eager modules drew)
    assert e.params["unet_engine"] == "eager"
    qtbot.waitUntil(w.host.worker.warm_ready.is_set, timeout=GEN_TIMEOUT)
    qtbot.waitUntil(lambda: "s warm-up (ONNX Runtime)" in w.model_panel.fields["load"].text())
    assert w.host.worker.pipe.graphs()["unet"]
    assert "Random test model" in w.model_panel.card.toPlainText()
    # attention highlighting: words from the prompt, overlay drawn on demand
    words = [w.generator.word_box.itemText(i) for i in range(w.generator.word_box.count())]
    assert "effusion" in words
    assert w.generator.word_box.currentText() == "effusion"
    assert not w.view.has_overlay()
    w.generator.highlight_check.setChecked(True)
    assert w.view.has_overlay()
    w.act_highlight.trigger()
    assert not w.view.has_overlay()


def test_cancel_mid_run(qtbot, window):
    w = window
    _set_quick(w, steps=200, seed=3)
    with qtbot.waitSignal(w.previewShown, timeout=GEN_TIMEOUT):
        w.generator.request_generate()
    assert w.generator.cancel_button.isEnabled()
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as blocker:
        qtbot.mouseClick(w.generator.cancel_button, Qt.LeftButton)
    status, msg = blocker.args
    assert status == "cancelled"
    assert w.generator.generate_button.isEnabled() and not w.generator.cancel_button.isEnabled()
    assert w.history.entries() == []
    assert "cancelled" in w.progress.format()
    assert not w.view.has_image()  # the unfinished preview is not left on screen as if it were a result


def test_escape_cancels(qtbot, window):
    w = window
    _set_quick(w, steps=200, seed=4)
    with qtbot.waitSignal(w.previewShown, timeout=GEN_TIMEOUT):
        w.generator.request_generate()
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as blocker:
        w.view.setFocus()
        qtbot.keyClick(w.view, Qt.Key_Escape)
    assert blocker.args[0] == "cancelled"


def test_batch_and_reuse_parameters(qtbot, window):
    w = window
    _set_quick(w, steps=2, seed=11)
    w.generator.batch_spin.setValue(2)
    status, msg = _generate(qtbot, w)
    assert status == "done", msg
    seeds = [e.seed for e in w.history.entries()]
    assert seeds == [11, 12]
    # change the form, then reuse the first result's parameters
    w.generator.prompt_edit.setPlainText("something else")
    w.generator.steps_spin.setValue(30)
    w.generator.random_seed_check.setChecked(True)
    first = w.history.entries()[0]
    w.history.list.setCurrentRow(0)
    qtbot.mouseClick(w.history.reuse_button, Qt.LeftButton)
    p = w.generator.job_params()
    assert p["prompt"] == first.prompt and p["steps"] == 2 and p["seed"] == 11
    # clicking a history item shows it again
    w.history.showRequested.emit(first)
    np.testing.assert_array_equal(w.view.image(), first.image())


def test_empty_prompt_is_a_message_not_a_request(qtbot, window):
    w = window
    w.generator.prompt_edit.setPlainText("   ")
    with qtbot.assertNotEmitted(w.host.requestGenerate):
        w.generator.request_generate()
    assert w.generator.error_label.isVisibleTo(w) and "empty" in w.generator.error_label.text()


def test_bad_model_folder_is_reported_not_fatal(qtbot, make_window, tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    w = make_window(bad)
    _set_quick(w, steps=2)
    status, msg = _generate(qtbot, w)
    assert status == "error"
    assert w.model_state == "failed"
    assert "not a model folder" in w.model_panel.state_label.text()
    assert "Load model folder" in w.model_panel.state_label.text()
    assert w.generator.error_label.isVisibleTo(w)
    assert w.generator.generate_button.isEnabled()
    # the user can then load a working folder from the Model info panel
    assert w.model_panel.load_button.isEnabled()


def test_load_model_folder_action(qtbot, make_window, tiny_model_dir, tmp_path):
    w = make_window(tmp_path / "missing")
    w.model_panel.loadFolderRequested.emit(str(tiny_model_dir))
    qtbot.waitUntil(lambda: w.model_state == "loaded", timeout=GEN_TIMEOUT)
    assert w.model_panel.fields["folder"].text() == str(tiny_model_dir)


def test_adherence_follows_the_model_until_the_user_chooses(qtbot, make_window, tiny_model_dir, tmp_path):
    from cxrdesk.core.generation.sampling import DEFAULT_GUIDANCE
    from tests.fixtures import model_copy_recommending

    g6 = model_copy_recommending(tiny_model_dir, tmp_path / "g6", 6.5)
    g3 = model_copy_recommending(tiny_model_dir, tmp_path / "g3", 3.0, [0.25, 1.0])
    w = make_window(tmp_path / "missing")
    spin = w.generator.guidance_spin

    def load(folder, win=w):
        win.model_panel.loadFolderRequested.emit(str(folder))
        qtbot.waitUntil(lambda: win.model_state == "loaded"
                        and win.model_panel.fields["folder"].text() == str(folder), timeout=GEN_TIMEOUT)

    load(g6)
    assert spin.value() == 6.5 and w.model_panel.fields["guidance"].text() == "6.5"
    assert "recommends 6.5" in spin.toolTip()
    load(g3)
    assert spin.value() == 3.0  # still following the model
    assert w.model_panel.fields["guidance"].text() == "3 (applied from 25% to 100% noise)"
    # the user's own choice survives a model change and a restart, also when it is the value a
    # folder without a recommendation would get
    spin.setValue(DEFAULT_GUIDANCE)
    load(g6)
    assert spin.value() == DEFAULT_GUIDANCE and w.generator.job_params()["guidance_scale"] == DEFAULT_GUIDANCE
    w.close()
    w2 = make_window(tmp_path / "missing")
    load(g3, w2)
    assert w2.generator.guidance_spin.value() == DEFAULT_GUIDANCE
    w2.generator.guidance_spin.setValue(3.0)  # back to the model's value: follows it again
    load(g6, w2)
    assert w2.generator.guidance_spin.value() == 6.5


def test_settings_persist_between_runs(qtbot, make_window, tiny_model_dir):
    w = make_window(tiny_model_dir)
    w.generator.prompt_edit.setPlainText("Cardiomegaly. No effusion.")
    w.generator.steps_spin.setValue(17)
    w.generator.guidance_spin.setValue(6.5)
    w.generator.sampler_box.setCurrentIndex(w.generator.sampler_box.findData("euler"))
    w.generator.random_seed_check.setChecked(False)
    w.generator.seed_spin.setValue(1234)
    w.enhance.select_preset("Sharp Detail")
    w.resize(w.width() - 40, w.height() - 30)
    qtbot.wait(50)
    w.dock_history.hide()
    geometry = w.saveGeometry()
    w.close()
    from PySide6.QtCore import QSettings

    from cxrdesk.ui.paths import settings_path

    saved = QSettings(str(settings_path()), QSettings.IniFormat).value("window/geometry")
    assert saved == geometry
    w2 = make_window(tiny_model_dir)
    p = w2.generator.job_params()
    assert p["prompt"] == "Cardiomegaly. No effusion."
    assert p["steps"] == 17 and p["guidance_scale"] == 6.5 and p["sampler"] == "euler"
    assert p["seed"] == 1234 and p["random_seed"] is False
    assert w2.enhance.preset_box.currentText() == "Sharp Detail"
    # geometry and dock layout come back (the exact size is up to the platform's screen: the
    # offscreen screen is smaller than the window, so only the restore itself is checked)
    assert w2._state_restored
    assert not w2.dock_history.isVisible() and w2.dock_generator.isVisible()


def test_export_png_and_dicom_carry_the_window(qtbot, window, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    w = window
    _set_quick(w, steps=2, seed=5)
    assert _generate(qtbot, w)[0] == "done"
    w.act_presets["Lung"].trigger()
    c, wd = w.view.window()
    stored = w.view.image().copy()
    dcm = w.export_dicom(str(tmp_path / "a.dcm"))
    ds = pydicom.dcmread(dcm)
    centers = ds.WindowCenter if ds["WindowCenter"].VM > 1 else [ds.WindowCenter]
    widths = ds.WindowWidth if ds["WindowWidth"].VM > 1 else [ds.WindowWidth]
    assert float(centers[0]) == pytest.approx(c) and float(widths[0]) == pytest.approx(wd)
    assert ds.SyntheticData == "YES"
    np.testing.assert_array_equal(ds.pixel_array, stored)  # W/L is not baked into the pixels
    from cxrdesk.core.imaging.pngio import read_png

    png = read_png(w.export_png(str(tmp_path / "a.png"), bits=16, apply_window=False))  # full range
    np.testing.assert_array_equal(png.pixels, stored)
    assert png.window == pytest.approx((c, wd))
    assert png.metadata["seed"] == 5
    # re-open the exported DICOM: the file's window comes back as the view's window
    with qtbot.waitSignal(w.documentShown, timeout=20000):
        w.open_file(dcm)
    assert w.view.window() == pytest.approx((c, wd))
    assert w.view.is_synthetic()


def test_dicom_export_refused_for_real_images(qtbot, window, dataset_dir, tmp_path):
    w = window
    with qtbot.waitSignal(w.documentShown, timeout=20000):
        w.open_file(str(dataset_dir / "images" / "img01.png"))
    assert not w.doc.exportable
    assert not w.act_export_dicom.isEnabled()
    assert w.export_dicom(str(tmp_path / "x.dcm")) is None
    # a PNG of the view is still possible (plain 8-bit picture, no synthetic claim)
    out = w.export_png(str(tmp_path / "view.png"))
    from PIL import Image

    assert Image.open(out).mode == "L"


def test_unexpected_exception_in_a_slot_is_logged_not_fatal(qtbot, window, cxrdesk_data_dir):
    import sys

    from cxrdesk.ui.app import install_excepthook, setup_logging

    setup_logging()
    old = sys.excepthook
    install_excepthook(lambda: window)
    try:
        try:
            raise RuntimeError("boom in a slot")
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
    finally:
        sys.excepthook = old
    import logging

    for h in logging.getLogger("cxrdesk").handlers:
        h.flush()
    log = (cxrdesk_data_dir / "logs" / "cxrdesk.log").read_text()
    assert "boom in a slot" in log
    assert window.isVisible()


def test_ctrl_enter_in_the_prompt_box_generates(qtbot, window):
    w = window
    _set_quick(w, steps=2, seed=9)
    w.generator.prompt_edit.setFocus()
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as blocker:
        with qtbot.waitSignal(w.generator.generateRequested, timeout=5000):
            qtbot.keyClick(w.generator.prompt_edit, Qt.Key_Return, Qt.ControlModifier)
    assert blocker.args[0] == "done"
    assert "\n" not in w.generator.prompt_edit.toPlainText().strip()  # no newline typed


def test_fast_previews_every_step_sharp_ones_feed_the_chart(qtbot, window):
    w = window
    _set_quick(w, steps=6, seed=21)
    w.generator.preview_spin.setValue(3)
    seen = []
    w.host.worker.preview.connect(lambda job, img, step, total, full: seen.append((step, full)))
    status, msg = _generate(qtbot, w)
    assert status == "done", msg
    qtbot.waitUntil(lambda: len(seen) == 6, timeout=5000)
    assert seen == [(1, False), (2, False), (3, True), (4, False), (5, False), (6, True)]
    assert [p["step"] for p in w.generator.chart.points] == [3, 6]
    assert [m["step"] for m in w.history.entries()[0].step_metrics] == [3, 6]


def test_a_background_task_finishing_after_the_application_closed_is_quiet(qtbot):
    import shiboken6

    from cxrdesk.ui.tasks import _Dispatcher, _Task

    target = _Dispatcher()
    task = _Task(target, 1, lambda: 42, (), {})
    task.setAutoDelete(False)
    shiboken6.delete(target)  # the application shut down while the task ran
    task.run()  # raised "Signal source has been deleted" before


def test_background_results_reach_the_gui_thread_and_skip_a_closed_owner(qtbot):
    """Pool threads carry only a task number: callbacks run in the GUI thread, a task whose owner
    widget was closed delivers nothing, and no callback is kept once its task has finished."""
    import threading

    import shiboken6
    from PySide6.QtWidgets import QWidget

    from cxrdesk.ui.tasks import dispatcher, run_task

    gui = threading.get_ident()
    got, errors = [], []
    run_task(lambda x: (x * 2, threading.get_ident()), 21, done=got.append, error=errors.append)
    run_task(lambda: 1 / 0, done=got.append, error=errors.append)
    gone = QWidget()
    run_task(lambda: "late", done=lambda r: got.append(("late", r)), owner=gone)
    shiboken6.delete(gone)  # closed before any result could arrive (results need the event loop)
    qtbot.waitUntil(lambda: dispatcher().pending() == 0, timeout=10000)
    assert len(got) == 1 and got[0][0] == 42 and got[0][1] != gui
    assert errors == ["division by zero"]


def test_old_settings_move_to_new_defaults_but_keep_real_choices(qtbot, make_window, tiny_model_dir):
    """A version-1 settings file stored its day's defaults (sampler dpm++, sharp preview every 2
    steps): they become today's defaults once; other stored choices stay."""
    from PySide6.QtCore import QSettings

    from cxrdesk.ui.generator_panel import DEFAULT_SAMPLER, SHARP_PREVIEW_EVERY
    from cxrdesk.ui.paths import settings_path

    def write(**values):
        s = QSettings(str(settings_path()), QSettings.IniFormat)
        s.clear()
        for k, v in values.items():
            s.setValue(f"generator/{k}", v)
        s.sync()

    write(sampler="dpm++", preview_every=2, steps=17)  # version 1: no settings_version
    w = make_window(tiny_model_dir)
    assert w.generator.sampler_box.currentData() == DEFAULT_SAMPLER != "dpm++"
    assert w.generator.preview_spin.value() == SHARP_PREVIEW_EVERY != 2
    assert w.generator.steps_spin.value() == 17
    w.generator.sampler_box.setCurrentIndex(w.generator.sampler_box.findData("dpm++"))
    w.close()
    assert w.generator.sampler_box.currentData() == "dpm++"
    w2 = make_window(tiny_model_dir)  # a choice saved as version 2 is kept, even the old default
    assert w2.generator.sampler_box.currentData() == "dpm++"
    w2.close()
    write(sampler="euler", preview_every=3)  # version 1 values that were not the defaults: kept
    w3 = make_window(tiny_model_dir)
    assert w3.generator.sampler_box.currentData() == "euler" and w3.generator.preview_spin.value() == 3


def test_prompt_asking_for_a_rare_finding_gets_a_note(qtbot, make_window, tiny_model_dir, tmp_path):
    from tests.fixtures import model_copy_recommending

    counted = model_copy_recommending(tiny_model_dir, tmp_path / "counted",
                                      label_counts={"No Finding": 900, "Effusion": 75, "Pneumonia": 555})
    w = make_window(counted)
    g = w.generator
    g.prompt_edit.setPlainText("Right lower lobe pneumonia with small pleural effusion")
    assert not g.rare_label.isVisible()  # counts are known only once the model has loaded
    w.model_panel.loadNowRequested.emit()
    qtbot.waitUntil(lambda: w.model_state == "loaded", timeout=GEN_TIMEOUT)
    assert g.rare_label.isVisible() and "effusion (75)" in g.rare_label.text()
    assert "pneumonia" not in g.rare_label.text()  # 555 films: not rare
    g.prompt_edit.setPlainText("Right lower lobe pneumonia. No pleural effusion.")
    assert not g.rare_label.isVisible()


def test_prompt_asking_for_a_finding_drawn_poorly_gets_a_note(qtbot, make_window, tiny_model_dir, tmp_path):
    from tests.fixtures import FINDINGS_CHECK, model_copy_recommending

    checked = model_copy_recommending(tiny_model_dir, tmp_path / "checked", findings_check=FINDINGS_CHECK,
                                      label_counts={"No Finding": 900, "Effusion": 75, "Pneumonia": 555})
    w = make_window(checked)
    g = w.generator
    w.model_panel.loadNowRequested.emit()
    qtbot.waitUntil(lambda: w.model_state == "loaded", timeout=GEN_TIMEOUT)
    g.prompt_edit.setPlainText("Right lower lobe pneumonia")
    assert g.rare_label.isVisible() and "mostly draws COVID-19-like films" in g.rare_label.text()
    assert "Compare with real films" in g.rare_label.text()
    g.prompt_edit.setPlainText("Right lower lobe pneumonia with small pleural effusion")  # both notes
    assert "effusion (75)" in g.rare_label.text() and "COVID-19-like" in g.rare_label.text()
    g.prompt_edit.setPlainText("Normal chest radiograph. No pneumonia.")
    assert not g.rare_label.isVisible()


def test_missing_x11_libraries_are_named_with_their_packages_before_qt_starts(monkeypatch, capsys):
    """On X11 without the libraries Qt's xcb plugin loads, the app says which packages to install
    instead of letting Qt abort with "could not load the Qt platform plugin"."""
    from cxrdesk.ui import app as app_mod

    absent = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}
    have = lambda lib: lib not in absent  # noqa: E731
    x11 = {"DISPLAY": ":0"}
    assert app_mod.missing_xcb_packages(x11, "linux", have) == ["libxcb-icccm4", "libxcb-keysyms1"]
    assert app_mod.missing_xcb_packages({**x11, "QT_QPA_PLATFORM": "xcb"}, "linux", have) == ["libxcb-icccm4", "libxcb-keysyms1"]
    # not on X11: nothing to check
    assert app_mod.missing_xcb_packages({**x11, "QT_QPA_PLATFORM": "offscreen"}, "linux", have) == []
    assert app_mod.missing_xcb_packages({**x11, "WAYLAND_DISPLAY": "wayland-0"}, "linux", have) == []
    assert app_mod.missing_xcb_packages({}, "linux", have) == []
    assert app_mod.missing_xcb_packages(x11, "win32", have) == []
    assert app_mod.missing_xcb_packages(x11, "linux", lambda lib: True) == []

    # said before Qt starts (Qt aborts the process when they are truly missing; a wrong guess must not stop the app)
    class Stop(Exception):
        pass

    def qt_starts():
        assert "sudo apt-get install libxcb-icccm4" in capsys.readouterr().err
        raise Stop

    monkeypatch.setattr(app_mod, "missing_xcb_packages", lambda: ["libxcb-icccm4"])
    monkeypatch.setattr(app_mod, "make_app", qt_starts)
    with pytest.raises(Stop):
        app_mod.run(preload=False)


def test_closing_the_window_skips_a_warm_up_not_yet_started(qtbot, tmp_path):
    """The ONNX warm-up is queued on the worker thread after a load; once the window closes, the
    parts not yet begun are skipped, so closing never waits for (or abandons a thread in) an export."""
    from cxrdesk.ui.history import HistoryStore
    from cxrdesk.ui.worker import GenerationWorker

    calls = []

    class Pipe:
        info = {"warm_up_seconds": 0.0}

        def warm_up(self, attention=False):
            calls.append(attention)
            return 0.1

    worker = GenerationWorker(HistoryStore(tmp_path / "h"), None)
    worker.pipe = Pipe()
    worker._warm_up_part(worker._warm_gen, attention=True)
    assert calls == [True] and worker.warm_ready.is_set()
    worker.warm_ready.clear()
    worker.stopping.set()
    worker._warm_up_part(worker._warm_gen, attention=True)
    assert calls == [True] and not worker.warm_ready.is_set()
