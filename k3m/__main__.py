import sys

from k3m.cli import main

sys.exit(main())
