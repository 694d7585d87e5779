"""``python -m k3m.pretrain``: the pretraining entry point (see k3m.training)."""
import sys

from k3m.cli import main as k3m_main


def main(argv: list[str] | None = None) -> int:
    return k3m_main(["pretrain", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
