"""Shared pieces of every stage: frames, errors, atomic writes, provenance, HDF5, audio and RTTM I/O, tables, window aggregation, config checks."""
