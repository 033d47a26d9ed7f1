"""GPT-2 style decoder (filled by the GPT work)."""
__all__: list = []
