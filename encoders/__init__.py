"""Modal encoders: title/knowledge text (shared BERT), image (patches, CNN grid, regions)."""
