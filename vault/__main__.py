"""``python -m vault serve | rotate-key | reencrypt``."""

import sys

from vault.cli import main

sys.exit(main())
