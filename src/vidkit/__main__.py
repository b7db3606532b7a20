import sys

from vidkit.cli import main

sys.exit(main())
