"""Parts of `protector evaluate`: pairing files, scoring, fidelity, baselines, aggregation, plots."""
