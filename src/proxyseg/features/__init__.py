"""Stage `features`: WavLM hidden states cached into HDF5 shards; the demo WavLM's pre-training."""
