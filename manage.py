#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Training and generation commands use TORCH_THREADS threads (default 1), set before torch
    # starts its pools.
    from config.threads import thread_caps_apply

    thread_caps_apply()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
