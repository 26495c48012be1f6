"""Commands that live in their own module: see ``netdsl.cli.COMMANDS``."""
