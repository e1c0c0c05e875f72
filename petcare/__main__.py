"""`python -m petcare` is the `petcare` command."""

from petcare.cli import main

main()
