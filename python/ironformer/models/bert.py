"""BERT style encoder (filled by the BERT work)."""
__all__: list = []
