"""Enrich: extract article fields from raw pages (the enrich stage) and, in ``dedup``, decide
duplicates, versions and stories (the dedup stage). Imports only the kernel."""
