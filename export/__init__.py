"""Export trained models to the formats phones run and prove each keeps parity: `python -m export.all`
(see `python -m export.all --help`); `export.runners.load(path)` runs any artifact with the spec it carries."""
