"""`python -m exospherehost.cli` is `exosphere`."""

from exospherehost.cli import main

main()
