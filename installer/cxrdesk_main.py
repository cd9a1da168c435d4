"""Entry point of the frozen (PyInstaller) build: the same `cxrdesk` command as the wheel's."""
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from cxrdesk.cli import main

    sys.exit(main())
