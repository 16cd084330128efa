"""Data: manifests, audio reading, text normalisation, tokenizer, datasets and importers."""
