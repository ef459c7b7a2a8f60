"""``python -m pickwise`` runs the command-line interface (also what ``torchrun -m pickwise`` starts)."""

from pickwise.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
