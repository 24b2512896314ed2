"""The MRI case kind (seed 002): a liver lesion's multi-sequence MRI, its T2 region of interest and the patient's
clinical record, turned into image groups for a lesion-class model."""
