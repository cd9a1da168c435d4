"""DICOM: the Secondary Capture writer (writer) and reader (reader), the header every written file
shares (part10), presentation states (presentation), sending to a PACS (pacs) with its settings
(pacs_settings) and retry queue (pacs_queue)."""
