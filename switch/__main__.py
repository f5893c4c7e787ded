import sys

from switch.process.cli import main

sys.exit(main())
