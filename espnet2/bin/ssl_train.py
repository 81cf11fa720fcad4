"""``python -m espnet2.bin.ssl_train``: train (or collect stats for) an SSL model.

Same interface as ESPnet's: ``--config conf/train.yaml`` plus option overrides; see
``--print_config`` for every option with its value and ``--help`` for descriptions.
"""

from __future__ import annotations

from espnet2.tasks.ssl import SSLTask


def get_parser():
    return SSLTask.get_parser()


def main(cmd: list[str] | None = None) -> None:
    SSLTask.main(cmd)


if __name__ == "__main__":
    main()
