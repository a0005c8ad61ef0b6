"""Readers and writers for the on-disk formats users bring: audio, RTTM, UEM, list files."""
