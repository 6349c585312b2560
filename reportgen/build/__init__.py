"""The build: a site from the configured models (stage, build each model, render its pages, swap it in), and
what keeps rebuilds incremental and safe (fingerprints, ownership of the files written)."""
