"""Core: no Qt below here."""
