"""The model file, whatever its family: metadata contract and digests, the model record, signatures."""
