import sys

from takefive.cli import main

sys.exit(main())
