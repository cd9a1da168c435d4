"""DICOM: the Secondary Capture writer (writer) and reader (reader), presentation states
(presentation), sending to a PACS (pacs) with its settings (pacs_settings) and retry queue (pacs_queue)."""
