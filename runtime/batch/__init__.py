"""Many cases: manifests, resumable batches, and scale-out on Dask (with TLS access and its certificates)."""
