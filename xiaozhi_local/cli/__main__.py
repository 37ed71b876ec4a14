"""`python -m xiaozhi_local.cli` = the `xiaozhi` command."""

from . import main

main()
