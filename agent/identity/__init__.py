"""Device and node identity: normalization tables, cloud detection, labels."""
