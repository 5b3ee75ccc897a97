"""pair_datasets."""
