import sys

from tesson.cli import main

sys.exit(main())
