"""Stage `evaluate`: decisions, pyannote.metrics scores, fidelity to the teacher."""
