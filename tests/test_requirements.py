"""The dependency floors pyproject.toml states hold the APIs the code calls."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _floor(package: str) -> tuple[int, ...]:
    m = re.search(rf'"{package}>=([0-9.]+)"', PYPROJECT.read_text())
    assert m, f"no floor for {package} in pyproject.toml"
    return tuple(int(p) for p in m.group(1).split("."))


def test_pydicom_floor_is_the_one_whose_apis_the_code_uses():
    import pydicom
    from pydicom import Dataset

    assert _floor("pydicom") >= (3, 0)  # the APIs below arrived in pydicom 3.0
    assert tuple(int(p) for p in pydicom.__version__.split(".")[:2]) >= _floor("pydicom")[:2]
    import pydicom.pixels  # noqa: F401 - the pixel backends' module (pydicom 3)

    assert hasattr(Dataset, "pixel_array_options")
    assert "enforce_file_format" in inspect.signature(Dataset.save_as).parameters
