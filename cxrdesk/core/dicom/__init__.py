"""DICOM: the Secondary Capture writer and reader (dicom), sending to a PACS and its retry queue
(pacs)."""
