"""Put the policy pack folder on sys.path, as the CLI does when it runs the pack."""

import sys

from .helpers import PACK_DIR

if str(PACK_DIR) not in sys.path:
    sys.path.insert(0, str(PACK_DIR))
