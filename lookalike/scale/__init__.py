"""Scale-out: ingestion on a Ray cluster."""
