import sys

from openkws.cli import main

sys.exit(main())
