"""Images: stored values and window/level (imaging), enhancement filters (enhancement), image
metrics (metrics), PNG files with their parameters (pngio), reading any image file safely (imagefile)."""
