import sys

from localdev.eventgrid.cli import main

sys.exit(main())
