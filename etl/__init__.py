"""Catalog ETL: readers, the declarative mapping, validation and the catalog build."""
