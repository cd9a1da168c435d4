"""Images: stored values, window/level, enhancement and metrics (imaging), PNG files with their
parameters (pngio), reading any image file safely (imagefile)."""
