import sys

from noisefs.cli import main

sys.exit(main())
