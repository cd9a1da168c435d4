"""What every DICOM file cxrdesk writes starts with, whatever its IOD: the Part 10 file meta
(explicit VR little endian, cxrdesk's implementation version name) and the SOP Common attributes
(UTF-8, a fresh SOP instance UID, the instance creation date and time); and the encoding to bytes."""
from __future__ import annotations

import datetime as _dt
import io


def new_instance(sop_class_uid: str, now: _dt.datetime | None = None):
    """A new ``pydicom.FileDataset`` of ``sop_class_uid`` with its file meta and SOP Common module."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    from ... import __version__

    now = now or _dt.datetime.now()
    sop_uid = generate_uid()
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class_uid
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = f"CXRDESK_{__version__}"[:16]
    ds = FileDataset(None, {}, file_meta=fm, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    return ds


def part10_bytes(ds) -> bytes:
    """``ds`` encoded as a DICOM Part 10 file, in memory."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
