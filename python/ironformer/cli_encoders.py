"""CLI subcommands for encoders (`ironformer embed`, `ironformer classify`); filled by the BERT work."""


def add_encoder_commands(subparsers) -> None:
    """Register the encoder subcommands on the main CLI's argparse subparsers."""
    return None
