"""Stage `dictionary`: log-power spectrograms and the NMF dictionary they pre-train."""
