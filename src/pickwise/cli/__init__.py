"""The ``pickwise`` command-line interface (one console script, one subcommand per capability)."""
