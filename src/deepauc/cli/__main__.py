import sys

from deepauc.cli import main

sys.exit(main())
