"""Parse ``ssl.sh`` options from the block the script declares them in, print shell code.

    eval "$(python -m espnet2.bin.ssl_sh_options --script ssl.sh -- "$@")"

Prints assignments for the given options; for ``--help`` prints the help (generated from the
declarations) to stderr and ``exit 0``; for a bad option the error and ``exit 1``.
"""

from __future__ import annotations

import argparse
import sys

from espnet2.recipe.options import (
    OptionError,
    format_help,
    parse_args,
    parse_declarations,
    shell_assignments,
)


def main(cmd: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--script", required=True, help="the shell script holding the options block")
    p.add_argument("--usage", default=None, help="first help line")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- followed by the script's arguments")
    a = p.parse_args(cmd)
    argv = a.args[1:] if a.args[:1] == ["--"] else a.args
    try:
        options = parse_declarations(a.script)
        if "--help" in argv or "-h" in argv:
            usage = a.usage or f"Usage: {a.script} --train_set <set> --valid_set <set> [options]"
            sys.stderr.write(format_help(options, usage))
            print("exit 0")
            return 0
        print(shell_assignments(parse_args(options, argv)), end="")
        return 0
    except OptionError as e:
        sys.stderr.write(f"{a.script}: error: {e}\n")
        print("exit 1")
        return 1


if __name__ == "__main__":
    sys.exit(main())
