import sys

from fastact.devtools.probes.measure import main

sys.exit(main())
