"""``python3 -m simfs.daemon``: the mount daemon (started by ``simfs mount``)."""
import sys

from simfs.daemon import main

sys.exit(main())
