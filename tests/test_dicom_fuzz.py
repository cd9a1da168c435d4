"""Fuzz the importer: mutated exports either load or raise DicomError, never anything else."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import RLELossless

from cxrdesk.core.dicom import reader, writer
N_PER_SEED = 100


def _seeds(tmp_path):
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(2000, 600, (24, 20)), 0, 4095).astype(np.uint16)
    meta = {"prompt": "PA chest radiograph, cardiomegaly", "seed": 3, "steps": 10}
    out = {
        "12bit": writer.write_dicom(tmp_path / "s12.dcm", img, meta, window=(1800, 2400)).read_bytes(),
        "8bit": writer.write_dicom(tmp_path / "s8.dcm", img, meta, bits=8).read_bytes(),
    }
    ds = writer.build_dataset(img, meta)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.compress(RLELossless)
    p = tmp_path / "rle.dcm"
    ds.save_as(p, enforce_file_format=True)
    out["rle_mono1"] = p.read_bytes()
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(0, 6)
    if kind == 0:  # random byte flips anywhere
        for _ in range(int(rng.integers(1, 12))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif kind == 1:  # flips in the header (tags, VRs, lengths)
        hdr = min(len(b), 900)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(128, hdr))] = int(rng.integers(0, 256))
    elif kind == 2:  # truncation
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == 3:  # a chunk deleted
        i = int(rng.integers(0, len(b)))
        del b[i: i + int(rng.integers(1, 64))]
    elif kind == 4:  # a chunk of junk inserted
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:  # a 4-byte length field set to an extreme value
        i = int(rng.integers(132, max(133, min(len(b) - 4, 900))))
        b[i:i + 4] = bytes([0xFF, 0xFF, 0xFF, int(rng.integers(0, 256))])
    return bytes(b)


@pytest.mark.parametrize("name", ["12bit", "8bit", "rle_mono1"])
def test_mutations_load_or_raise_dicom_error(tmp_path, name):
    data = _seeds(tmp_path)[name]
    rng = np.random.default_rng({"12bit": 11, "8bit": 12, "rle_mono1": 13}[name])
    target = tmp_path / "fuzz.dcm"
    loaded = failed = 0
    for _ in range(N_PER_SEED):
        target.write_bytes(_mutate(data, rng))
        try:
            img = reader.read_dicom(target)
        except reader.DicomError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg
            failed += 1
            continue
        for mode in ("auto", "range", "minmax", "window"):
            try:
                n = img.normalized(mode)
            except reader.DicomError:
                continue
            assert n.dtype == np.float32 and n.ndim == 2
            assert np.all(np.isfinite(n)) and n.min() >= 0.0 and n.max() <= 1.0
        img.summary()
        loaded += 1
    assert loaded + failed == N_PER_SEED


def test_truncation_at_every_region(tmp_path):
    data = _seeds(tmp_path)["12bit"]
    target = tmp_path / "t.dcm"
    for cut in list(range(0, 400, 7)) + list(range(400, len(data), max(1, len(data) // 60))):
        target.write_bytes(data[:cut])
        try:
            reader.read_dicom(target).normalized()
        except reader.DicomError:
            pass


# --------------------------------------------------------------------------------------------
# small files that claim huge images (issue 31): refused from the header, before decoding
# --------------------------------------------------------------------------------------------

def _png(path, width, height, bit_depth=8, colour=0, rows=True, text=None):
    """A PNG written chunk by chunk: IDAT of all-zero rows streamed through zlib (a 140 KB file can
    claim 12000x12000), or only a token IDAT (``rows=False``: a bomb's header)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))]
    if text is not None:
        out.append(chunk(b"tEXt", b"cxrdesk\0" + text.encode("latin-1")))
    z = zlib.compressobj(9)
    if rows:
        row = bytes(1 + width * max(bit_depth // 8, 1) * (3 if colour == 2 else 1))
        idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    else:
        idat = z.compress(bytes(1 + width)) + z.flush()
    out += [chunk(b"IDAT", idat), chunk(b"IEND", b"")]
    path.write_bytes(b"".join(out))
    return path


def _rle_claiming(path, rows, cols):
    """An RLE Lossless DICOM of a few KB whose header claims rows x cols 16-bit pixels."""
    ds = writer.build_dataset(np.full((24, 20), 1000, np.uint16), {})
    ds.compress(RLELossless)
    ds.Rows, ds.Columns = rows, cols
    ds.save_as(path, enforce_file_format=True)
    return path


def _deflated(path, pixel_bytes):
    """A Deflated Explicit VR Little Endian DICOM whose data set inflates to ``pixel_bytes`` of zeros
    (streamed: the test never holds them)."""
    import struct
    import zlib

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = writer.build_dataset(np.zeros((8, 8), np.uint16), {})
    side = int((pixel_bytes // 2) ** 0.5)
    ds.Rows = ds.Columns = side
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian

    def encoded(write, *args):
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write(buf, *args)
        return buf.getvalue()

    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    with open(path, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM" + encoded(write_file_meta_info, ds.file_meta))
        fh.write(z.compress(encoded(write_dataset, ds) + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes)))
        block = bytes(1 << 20)
        for _ in range(pixel_bytes >> 20):
            fh.write(z.compress(block))
        fh.write(z.flush())
    return path


def _hostile_files(folder):
    return {
        "png_12000": _png(folder / "big.png", 12000, 12000),                   # ~140 KB
        "png_bomb": _png(folder / "bomb.png", 60000, 60000, rows=False),       # PIL's own bomb limit
        "rle_16384": _rle_claiming(folder / "rle.dcm", 16384, 16384),
        "deflated": _deflated(folder / "deflated.dcm", 300 << 20),
    }


def test_hostile_sizes_are_refused_from_the_header(tmp_path):
    from cxrdesk.core.imaging import imagefile
    from cxrdesk.core.imaging import pngio
    from cxrdesk.core.data.datasets import DatasetError, load_gray

    files = _hostile_files(tmp_path)
    for name, path in files.items():
        assert path.stat().st_size < 10 << 20
        if path.suffix == ".dcm":
            with pytest.raises(reader.DicomError, match="too large"):
                reader.read_dicom(path)
            continue
        with pytest.raises(pngio.ImageFormatError, match="too large"):
            pngio.read_png(path)
        with pytest.raises(imagefile.ImageTooLargeError):
            imagefile.read_grey(path)
        with pytest.raises(DatasetError, match="too large"):
            load_gray(path)


def test_decoded_bytes_limit_counts_samples_and_bit_depth(tmp_path):
    from cxrdesk.core.imaging import imagefile
    side = int((imagefile.MAX_DECODED_BYTES / 8) ** 0.5) + 1  # under the pixel limit, over the byte one
    assert side * side < imagefile.MAX_PIXELS
    with pytest.raises(imagefile.ImageTooLargeError, match="MB decoded"):  # 16-bit RGBA: 8 bytes a pixel
        imagefile.open_pil(_png(tmp_path / "rgba16.png", side, side, 16, 6, rows=False))
    imagefile.open_pil(_png(tmp_path / "grey16.png", side, side, 16, 0, rows=False)).close()


def test_hostile_files_stay_small_in_memory(tmp_path):
    """Reading each hostile file in a fresh process peaks well under 1.5 GB."""
    import subprocess
    import sys

    _hostile_files(tmp_path)
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from cxrdesk.core.dicom import reader\n"
        "from cxrdesk.core.imaging import pngio\n"
        "for p in sorted(Path(sys.argv[1]).iterdir()):\n"
        "    try:\n"
        "        (reader.read_dicom if p.suffix == '.dcm' else pngio.read_png)(p)\n"
        "    except ValueError:\n"
        "        pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) < 1_500_000  # KB (Linux)


def test_deeply_nested_json_in_metadata_gives_no_metadata(tmp_path):
    from cxrdesk.core.imaging import pngio
    deep = "[" * 200_000 + "]" * 200_000
    png = pngio.read_png(_png(tmp_path / "deep.png", 8, 8, text=deep))
    assert png.metadata == {} and png.pixels.shape == (8, 8)
    assert reader.parse_image_comments(reader.PARAMS_PREFIX + deep) == {}
    assert reader.parse_image_comments(reader.PARAMS_PREFIX + "[1, 2]") == {}
