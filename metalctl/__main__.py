import sys

from metalctl.cli.main import main

sys.exit(main())
