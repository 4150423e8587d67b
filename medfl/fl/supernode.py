"""A site's SuperNode: Flower 1.42's ``flower-supernode`` with shorter waits.

The very same SuperNode, its arguments Flower's own; only its fixed waits are
shortened (see ``medfl.fl._quick``): run as ``python -m medfl.fl.supernode ARGS``.
"""

from __future__ import annotations

import sys


def main() -> None:
    from flwr.supernode.cli import flower_supernode

    from medfl.fl._quick import quick_object_pulls, quick_supernode_polls

    quick_object_pulls()
    quick_supernode_polls()
    sys.argv[0] = "flower-supernode"  # Flower's own help and messages
    flower_supernode()


if __name__ == "__main__":
    main()
