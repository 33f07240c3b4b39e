"""Sub-commands of the `dfkd` CLI, one module each (see `dfkd.cli`)."""
