import sys

from plinknet.cli import main

sys.exit(main())
