"""Start the desktop application: ``run(model=None) -> exit code``.

Start-up is kept light: PySide6, numpy and OpenCV only. torch and diffusers are imported by the
generation worker thread when the model loads, after the window is on screen.
"""
from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import os
import sys
import traceback

_fault_file = None


def setup_logging() -> None:
    from .paths import logs_dir

    global _fault_file
    root = logging.getLogger("cxrdesk")
    target = logs_dir() / "cxrdesk.log"
    for old in [h for h in root.handlers if getattr(h, "_cxrdesk", False)]:
        if old.baseFilename == str(target):
            return
        root.removeHandler(old)  # the data folder changed (tests): log to the new one
        old.close()
    try:
        h = logging.handlers.RotatingFileHandler(target, maxBytes=1_000_000, backupCount=3,
                                                 encoding="utf-8")
    except OSError:
        return
    h._cxrdesk = True
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(h)
    root.setLevel(logging.INFO)
    if faulthandler.is_enabled() and _fault_file is None:
        return  # someone already chose where native crashes are reported (python -X faulthandler, a test runner)
    try:
        fault_file = open(logs_dir() / "crash.log", "a", encoding="utf-8")
    except OSError:
        return
    faulthandler.enable(fault_file, all_threads=True)
    if _fault_file is not None:
        _fault_file.close()
    _fault_file = fault_file


def install_excepthook(window_getter) -> None:
    """Unexpected exceptions in Qt slots: log them and show a message; the application keeps running."""

    def hook(etype, value, tb):
        text = "".join(traceback.format_exception(etype, value, tb))
        logging.getLogger("cxrdesk").error("unhandled exception\n%s", text)
        sys.__stderr__.write(text)
        if issubclass(etype, KeyboardInterrupt):
            return
        try:
            from PySide6.QtWidgets import QMessageBox

            from .paths import logs_dir

            w = window_getter()
            if w is not None and w.isVisible() and not os.environ.get("CXRDESK_NO_DIALOGS"):
                QMessageBox.critical(w, "Unexpected error",
                                     f"Something went wrong: {value}\n\nYour results are saved. Details are in "
                                     f"{logs_dir() / 'cxrdesk.log'}.")
        except Exception:  # noqa: BLE001
            pass

    sys.excepthook = hook


def apply_style(app) -> None:
    from PySide6.QtGui import QColor, QIcon, QPalette

    from .paths import resource_path

    app.setStyle("Fusion")
    pal = QPalette()
    base, window, text = QColor(30, 32, 36), QColor(40, 43, 48), QColor(225, 228, 232)
    pal.setColor(QPalette.Window, window)
    pal.setColor(QPalette.WindowText, text)
    pal.setColor(QPalette.Base, base)
    pal.setColor(QPalette.AlternateBase, window)
    pal.setColor(QPalette.ToolTipBase, QColor(250, 250, 235))
    pal.setColor(QPalette.ToolTipText, QColor(20, 20, 20))
    pal.setColor(QPalette.Text, text)
    pal.setColor(QPalette.Button, QColor(52, 56, 62))
    pal.setColor(QPalette.ButtonText, text)
    pal.setColor(QPalette.BrightText, QColor(255, 80, 80))
    pal.setColor(QPalette.Highlight, QColor(52, 120, 200))
    pal.setColor(QPalette.HighlightedText, QColor(255, 255, 255))
    pal.setColor(QPalette.Link, QColor(110, 170, 240))
    pal.setColor(QPalette.PlaceholderText, QColor(135, 140, 148))
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        pal.setColor(QPalette.Disabled, role, QColor(120, 124, 130))
    app.setPalette(pal)
    qss = resource_path("style.qss")
    if qss.exists():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    icon = resource_path("cxrdesk.svg")
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))


# The system libraries Qt's X11 platform plugin (libqxcb) loads, with the Debian/Ubuntu package of
# each. A desktop install has them; a minimal one often lacks a few, and Qt then stops with "could
# not load the Qt platform plugin xcb" and no hint of which library is missing.
XCB_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-randr.so.0": "libxcb-randr0",
}


def missing_xcb_packages(environ=None, platform: str | None = None, loadable=None) -> list[str]:
    """Debian packages of the X11 libraries Qt needs but cannot load, when the window will open on
    X11 (Linux, $DISPLAY set, not Wayland, no other QT_QPA_PLATFORM); [] otherwise."""
    env = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return []
    qpa = env.get("QT_QPA_PLATFORM", "")
    if qpa and not qpa.startswith("xcb"):
        return []
    if not env.get("DISPLAY") or (not qpa and env.get("WAYLAND_DISPLAY")):
        return []
    if loadable is None:
        import ctypes

        def loadable(name: str) -> bool:
            try:
                ctypes.CDLL(name)
                return True
            except OSError:
                return False
    return [pkg for lib, pkg in XCB_LIBRARIES.items() if not loadable(lib)]


def make_app(argv=None):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
    app.setApplicationName("cxrdesk")
    app.setDesktopFileName("cxrdesk")  # lets Wayland match the window to cxrdesk.desktop
    app.setOrganizationName("cxrdesk")
    app.setApplicationDisplayName("cxrdesk")
    apply_style(app)
    from . import gcguard

    gcguard.install()  # cyclic garbage is collected on this thread only (see gcguard)
    return app


def run(model: str | None = None, preload: bool = True) -> int:
    """Show the main window and run the event loop; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    setup_logging()
    missing = missing_xcb_packages()
    if missing:  # said before Qt tries (and, if they are truly missing, stops the process)
        msg = ("cxrdesk: this system seems to lack libraries that Qt needs for a window on X11; if the window "
               f"does not open, install them (Debian/Ubuntu):  sudo apt-get install {' '.join(missing)}")
        logging.getLogger("cxrdesk").error(msg)
        print(msg, file=sys.stderr, flush=True)
    app = make_app()
    from .mainwindow import MainWindow

    holder: dict = {}
    install_excepthook(lambda: holder.get("w"))
    w = MainWindow(model=model, preload=preload)
    holder["w"] = w
    w.show()
    return int(app.exec())
