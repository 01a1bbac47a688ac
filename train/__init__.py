"""Training: `python -m train --model NAME` (see `python -m train --help`)."""
