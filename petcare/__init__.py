"""petcare-workers: the pet-care business's background jobs on Temporal."""
