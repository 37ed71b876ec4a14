#!/usr/bin/env python3
"""Run the `xiaozhi` command from a checkout: `python cli.py …` equals the installed `xiaozhi`."""

from xiaozhi_local.cli import main

if __name__ == "__main__":
    main()
